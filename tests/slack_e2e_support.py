"""Shared pieces of the Slack end-to-end tests: real speech and enrollment through the modal (from `testbed`, which
the benchmarks share), meetings, waiting on jobs."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np

from storage.crypto import new_key
from storage.database import Database
from storage.migrate import upgrade
from testbed.fake_slack import TEAM_ID, BotUnderTest, FakeSlack, bot_settings
from testbed.slack_driver import dms, submit_enrollment
from testbed.speech import DATA, SR, utterance, wav_bytes  # noqa: F401
from tests.shared_cpu import shared_cpu


@asynccontextmanager
async def slack_world(engine, tmp: Path, *, run_jobs: bool = True, speech=None,
                      **settings) -> AsyncIterator[tuple[FakeSlack, Database, BotUnderTest]]:
    """One workspace: fake Slack, a migrated SQLite file in `tmp` and the bot serving on a real socket
    (without its job runner when the test drives the recordings itself; `speech`: a recognizer double). The data is encrypted at rest as in
    production, with a key in the settings, so a `python -m bot worker` given the same settings reads it."""
    fake = FakeSlack()
    await fake.start()
    url = f"sqlite+aiosqlite:///{tmp / 'voiceid.db'}"
    await upgrade(url)
    settings.setdefault("data_encryption_keys", new_key())
    db = Database(url, keys=[settings["data_encryption_keys"]])
    settings.setdefault("var_dir", tmp / "var")
    bot = await BotUnderTest(fake, bot_settings(fake, url, **settings), db, engine, run_jobs=run_jobs,
                             speech=speech, cpu=shared_cpu()).start()
    try:
        yield fake, db, bot
    finally:
        await bot.stop()
        await db.dispose()
        await fake.close()


def concat(parts: list[tuple[str, int]], pause: float = 0.0) -> np.ndarray:
    gap = np.zeros(int(pause * SR), np.float32)
    return np.concatenate([x for r, i in parts for x in (utterance(r, i), gap)])


MEETING_UTTERANCES = range(2, 8)  # what meeting() takes from each reader; enrollment clips use the others


def enrollment_clip(parts: list[tuple[str, int]]) -> bytes:
    """A WAV clip for /enroll. Never from utterances that meeting() uses: the test must show a voice being
    recognised, not the very audio the voiceprint was made from."""
    reused = [p for p in parts if p[1] in MEETING_UTTERANCES]
    assert not reused, f"enrollment clip reuses meeting utterances {reused}"
    return wav_bytes(concat(parts))


def meeting() -> np.ndarray:
    """About 2.5 minutes: four readers taking turns, with pauses and varied gain (fixed seed)."""
    rng = np.random.default_rng(7)
    order = [(r, i) for i in MEETING_UTTERANCES for r in ("1688", "1998", "2033", "2414")]
    parts = []
    for reader, index in order:
        parts += [utterance(reader, index) * rng.uniform(0.6, 1.0), np.zeros(int(rng.uniform(0.3, 1.0) * SR))]
    return np.concatenate(parts).astype(np.float32)


async def recording_for(db: Database, file_id: str):
    from storage.recordings import find_recording

    return await find_recording(db, TEAM_ID, file_id)


async def wait_status(fake: FakeSlack, db: Database, file_id: str, statuses: set[str], timeout: float = 240):
    async def check():
        rec = await recording_for(db, file_id)
        if rec is None or rec.state.value not in statuses:
            return None
        # a failure is stored before it is shown in the thread; `notified_at` says it was shown
        return None if rec.state.value == "failed" and rec.notified_at is None else rec

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rec = await check()
        if rec is not None:
            return rec
        if asyncio.get_running_loop().time() > deadline:
            rec = await recording_for(db, file_id)
            raise AssertionError(f"recording {file_id} stuck in {rec and rec.status}: {rec and rec.error_message}")
        await asyncio.sleep(0.1)


async def enroll(bot: BotUnderTest, fake: FakeSlack, user: str, data: bytes, **kw) -> str:
    """Enrolls through the modal (see `submit_enrollment`); returns the DM with the result, or "errors: …" when
    the modal refused the submission."""
    before = len(dms(fake, user))
    body = await submit_enrollment(bot, fake, user, data, **kw)
    if body.get("response_action") == "errors":
        return "errors: " + " ".join(body["errors"].values())
    return (await fake.wait_for(lambda: dms(fake, user)[before:], timeout=180, what=f"DM to {user}"))[0]


def speaker_of(blocks: list, who: str) -> str:
    """The button value of the summary section that mentions `who`."""
    for b in blocks:
        if b.get("type") == "section" and "accessory" in b and who in b["text"]["text"]:
            return b["accessory"]["value"]
    raise AssertionError(f"{who} not in the summary")


async def press(bot: BotUnderTest, fake: FakeSlack, user: str, action: str, value: str, msg_ts: str, *,
                channel: str = "C0001") -> dict:
    """Press a button; returns the private reply the presser gets."""
    mine = lambda: [c for c in fake.calls_to("chat.postEphemeral") if c.params["user"] == user]
    n = len(mine())
    assert (await bot.press(user, action, value, channel=channel, message_ts=msg_ts)).status == 200
    return (await fake.wait_for(lambda: mine()[n:], what=f"reply to {user}"))[0].params


async def enroll_readers(services, readers: dict[str, str], tmp: Path) -> None:
    """Stores a voiceprint for each user from their reader's first utterance (never one of a recording's), made
    by the services' engine and keyed by its engine id, as `/enroll` would."""
    from bot.services.voiceprints import voiceprint_from_path
    from storage.models import utcnow
    from storage.voiceprints import upsert_voiceprint

    for user, reader in readers.items():
        clip = tmp / f"{user}.wav"
        clip.write_bytes(wav_bytes(utterance(reader, 0)))
        vp = await voiceprint_from_path(services, shared_cpu(), clip)
        await upsert_voiceprint(services.db, team_id=TEAM_ID, user_id=user, engine=services.engine.engine_id,
                                model_id=vp.model_id, voiceprint=vp.voiceprint, consent_at=utcnow(),
                                clip_duration=vp.clip_duration)


def private_replies(fake: FakeSlack, user: str) -> list[dict]:
    """What `user` was told privately: ephemeral messages, and DMs (where an ephemeral could not reach them)."""
    return [c.params for c in fake.calls if c.done and (
        (c.method == "chat.postEphemeral" and c.params.get("user") == user)
        or (c.method == "chat.postMessage" and c.params.get("channel") == user))]


async def press_identify_again(bot: BotUnderTest, fake: FakeSlack, user: str, value: str, msg_ts: str, *,
                               speakers: int | str | None = None, channel: str = "C0001") -> dict:
    """Press "Identify again", enter `speakers` (None: leave it empty) in the modal it opens and submit it; returns
    the private reply the presser gets (at once, without a modal, when the press itself is refused)."""
    modals = lambda: [c for c in fake.calls_to("views.open") if c.params.get("trigger_id") == f"trig-{user}"]
    n, m = len(modals()), len(private_replies(fake, user))
    assert (await bot.press(user, "identify_again", value, channel=channel, message_ts=msg_ts)).status == 200
    await fake.wait_for(lambda: modals()[n:] or private_replies(fake, user)[m:], what=f"modal or reply to {user}")
    if not modals()[n:]:
        return private_replies(fake, user)[m]
    view = modals()[n].params["view"]
    values = {"speakers": {"speakers": {"type": "number_input",
                                        "value": None if speakers is None else str(speakers)}}}
    resp = await bot.submit_view(user, view, values)
    assert resp.status == 200
    if (await resp.text()).strip():
        return {"text": "errors: " + " ".join((await resp.json())["errors"].values())}
    return (await fake.wait_for(lambda: private_replies(fake, user)[m:], what=f"reply to {user}"))[0]
