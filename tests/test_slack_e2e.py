"""The Slack bot end to end: signed requests to the real aiohttp endpoint, the fake Slack Web API, a real
SQLite database, the real local engine and real speech. Tests run in order and share one workspace."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from storage.database import Database
from storage.migrate import upgrade
from tests.fake_slack import BotUnderTest, FakeSlack, bot_settings, signed_headers

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech"
SR = 16000
CHANNEL = "C0001"
READERS = {"U1688": "1688", "U1998": "1998", "U2033": "2033"}  # enrolled
UNKNOWN = "U2414"  # in the channel, never enrolled

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.speech,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"real speech not found at {DATA} (see its README)"),
]


def utterance(reader: str, index: int) -> np.ndarray:
    import soundfile as sf

    samples, sr = sf.read(str(sorted((DATA / reader).glob("*.flac"))[index]), dtype="float32")
    assert sr == SR
    return samples


def wav_bytes(samples: np.ndarray) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def concat(parts: list[tuple[str, int]], pause: float = 0.0) -> np.ndarray:
    gap = np.zeros(int(pause * SR), np.float32)
    return np.concatenate([x for r, i in parts for x in (utterance(r, i), gap)])


def meeting() -> np.ndarray:
    """About 2.5 minutes: four readers taking turns, with pauses and varied gain (fixed seed)."""
    rng = np.random.default_rng(7)
    order = [(r, i) for i in range(2, 8) for r in ("1688", "1998", "2033", "2414")]
    parts = []
    for reader, index in order:
        parts += [utterance(reader, index) * rng.uniform(0.6, 1.0), np.zeros(int(rng.uniform(0.3, 1.0) * SR))]
    return np.concatenate(parts).astype(np.float32)


ENROLL_CLIPS = {"U1688": [("1688", 0)], "U1998": [("1998", 0)], "U2033": [("2033", 0), ("2033", 1)]}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine():
    from bot.engines.local import LocalEngine

    eng = LocalEngine(workers=1)
    yield eng
    await eng.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(engine, tmp_path_factory):
    """One workspace: fake Slack, a migrated SQLite file and the bot serving on a real socket."""
    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = [*READERS, UNKNOWN, "UBOT"]
    fake.users.update({"U1688": "Ann", "U1998": "Bea", "U2033": "Cid", UNKNOWN: "Dan"})
    path = tmp_path_factory.mktemp("slack-e2e") / "voiceid.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade(url)
    db = Database(url)
    bot = await BotUnderTest(fake, bot_settings(fake, url), db, engine).start()
    yield fake, db, bot
    await bot.stop()
    await db.dispose()
    await fake.close()


async def recording_for(db: Database, file_id: str):
    from storage.recordings import find_recording
    from tests.fake_slack import TEAM_ID

    return await find_recording(db, TEAM_ID, file_id)


async def wait_status(fake: FakeSlack, db: Database, file_id: str, statuses: set[str], timeout: float = 240):
    async def check():
        rec = await recording_for(db, file_id)
        return rec if rec is not None and rec.state.value in statuses else None

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rec = await check()
        if rec is not None:
            return rec
        if asyncio.get_running_loop().time() > deadline:
            rec = await recording_for(db, file_id)
            raise AssertionError(f"recording {file_id} stuck in {rec and rec.status}: {rec and rec.error_message}")
        await asyncio.sleep(0.1)


def dms(fake: FakeSlack, user: str) -> list[str]:
    return [c.params.get("text", "") for c in fake.calls_to("chat.postMessage") if c.params.get("channel") == user]


async def enroll(bot: BotUnderTest, fake: FakeSlack, user: str, data: bytes, *, name: str = "me.wav",
                 mimetype: str = "audio/wav", replace: bool = False, **file_kw) -> str:
    """/enroll → modal → view submission with the clip; returns the DM with the result."""
    before = len(dms(fake, user))
    assert (await bot.command(user)).status == 200
    opened = await fake.wait_for(lambda: [c for c in fake.calls_to("views.open")
                                          if c.params.get("trigger_id") == f"trig-{user}"], what="views.open")
    view = opened[-1].params["view"]
    f = fake.add_file(name, mimetype, data, user=user, **file_kw)
    values = {"clip": {"clip": {"type": "file_input", "files": [fake.file_object(f)]}},
              "consent": {"consent": {"type": "checkboxes", "selected_options": [{"value": "yes"}]}}}
    if replace:
        values["replace"] = {"replace": {"type": "checkboxes", "selected_options": [{"value": "yes"}]}}
    resp = await bot.submit_view(user, view, values)
    assert resp.status == 200
    body = await resp.json()
    if body.get("response_action") == "errors":
        return "errors: " + " ".join(body["errors"].values())
    return (await fake.wait_for(lambda: dms(fake, user)[before:], timeout=180, what=f"DM to {user}"))[0]


# -- requests ---------------------------------------------------------------------------------------

async def test_signature_checks_and_url_verification(world):
    _fake, _db, bot = world
    body = '{"type": "url_verification", "challenge": "abc123", "token": "x"}'
    resp = await bot.post(body, signed_headers(body))
    assert resp.status == 200 and (await resp.json())["challenge"] == "abc123"
    bad = signed_headers(body, secret="wrong-secret")
    assert (await bot.post(body, bad)).status == 401
    stale = signed_headers(body, timestamp=int(__import__("time").time()) - 600)
    assert (await bot.post(body, stale)).status == 401
    health = await bot.client.get("/healthz")
    assert health.status == 200 and (await health.json())["ok"] is True


async def test_enroll_help_status_and_modal_contents(world):
    fake, _db, bot = world
    resp = await bot.command("U1688", "help")
    assert "/enroll delete" in (await resp.text())
    resp = await bot.command("U1688", "status")
    assert "not enrolled" in (await resp.text())
    await bot.command("U1688")
    view = (await fake.wait_for(lambda: fake.calls_to("views.open"), what="modal")).pop().params["view"]
    text = str(view)
    assert view["callback_id"] == "enroll_modal"
    assert "file_input" in text and "consent" in text and "/enroll delete" in text and "30 s" in text or "30 seconds" in text


# -- enrollment -------------------------------------------------------------------------------------

async def test_enroll_three_readers(world):
    fake, db, bot = world
    for user, parts in ENROLL_CLIPS.items():
        reply = await enroll(bot, fake, user, wav_bytes(concat(parts)))
        assert "voiceprint is saved" in reply, reply
    from storage.voiceprints import get_voiceprint

    for user in ENROLL_CLIPS:
        assert await get_voiceprint(db, "T0001", user) is not None
    resp = await bot.command("U1688", "status")
    assert "You are enrolled since" in await resp.text()


async def test_enroll_bad_inputs_have_clear_messages(world):
    fake, db, bot = world
    pdf = await enroll(bot, fake, "UBAD", b"%PDF-1.4 not audio", name="notes.pdf", mimetype="application/pdf")
    assert pdf.startswith("errors:") and "not audio or video" in pdf
    long_clip = await enroll(bot, fake, "UBAD", wav_bytes(concat([("1688", i) for i in range(1, 8)])))
    assert "not enrolled" in long_clip and "30" in long_clip, long_clip
    two = await enroll(bot, fake, "UBAD", wav_bytes(concat([("1688", 2), ("2609", 0), ("1688", 3), ("2609", 1)],
                                                           pause=0.5)))
    assert "not enrolled" in two and ("voice" in two.lower() or "speaker" in two.lower()), two
    html = await enroll(bot, fake, "UBAD", wav_bytes(utterance("1688", 0)), serve_html=True)
    assert "not enrolled" in html and "web page" in html, html
    from storage.voiceprints import get_voiceprint

    assert await get_voiceprint(db, "T0001", "UBAD") is None


# -- recordings -------------------------------------------------------------------------------------

def thread_messages(fake: FakeSlack, ts: str):
    return fake.thread(CHANNEL, ts)


async def test_meeting_summary_names_three_and_uploads_chart(world):
    fake, db, bot = world
    f = fake.add_file("standup.wav", "audio/wav", wav_bytes(meeting()))
    event = bot.share_event(f)
    assert (await bot.event(event, event_id="EvMeeting")).status == 200
    rec = await wait_status(fake, db, f.id, {"posted", "failed"})
    assert rec.state.value == "posted", rec.error_message
    [reply] = thread_messages(fake, event["ts"])
    text = str(reply.blocks)
    for user in READERS:
        assert f"<@{user}>" in text
    assert "Unknown speaker 1" in text and f"<@{UNKNOWN}>" not in text
    assert "talk time" in text and "This is me" in text and "Not me" in text
    assert reply.text.startswith("Speakers in standup.wav")
    assert any("Identifying speakers in standup.wav" in h[0] for h in reply.history)
    [upload] = fake.calls_to("files.completeUploadExternal")
    assert upload.params["thread_ts"] == event["ts"] and upload.params["channel_id"] == CHANNEL
    png = fake.files[rec.chart_file_id].data
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    world_state["meeting"] = (rec.id, event["ts"], reply.ts)


world_state: dict = {}


async def test_same_event_three_times_makes_one_job_and_one_reply(world):
    fake, db, bot = world
    f = fake.add_file("retro.txt", "text/plain", b"not a recording")
    ignored = bot.share_event(f)
    await bot.event(ignored, event_id="EvText")
    g = fake.add_file("silence.wav", "audio/wav", wav_bytes(np.zeros(5 * SR, np.float32)))
    event = bot.share_event(g)
    fake.rate_limit["chat.postMessage"] = 1  # the first reply attempt gets a 429 with Retry-After
    responses = await asyncio.gather(*(bot.event(event, event_id="EvDup", retry=n or None) for n in range(3)))
    assert [r.status for r in responses] == [200, 200, 200]
    rec = await wait_status(fake, db, g.id, {"failed", "posted"})
    assert rec.state.value == "failed" and rec.error_code == "silent"
    [reply] = thread_messages(fake, event["ts"])
    assert "Could not identify speakers in silence.wav" in reply.text and "speech" in reply.text.lower()
    assert thread_messages(fake, ignored["ts"]) == []
    assert await recording_for(db, f.id) is None


async def test_corrupt_recording_gets_clear_message(world):
    fake, db, bot = world
    f = fake.add_file("broken.m4a", "audio/mp4", b"\x00\x00\x00\x18ftypM4A " + bytes(range(256)) * 40)
    event = bot.share_event(f)
    await bot.event(event, event_id="EvCorrupt")
    rec = await wait_status(fake, db, f.id, {"failed", "posted"})
    assert rec.state.value == "failed"
    [reply] = thread_messages(fake, event["ts"])
    assert "Could not identify speakers in broken.m4a" in reply.text
    assert rec.error_code in ("corrupt", "not_audio", "no_audio_track", "empty"), rec.error_code


# -- feedback ---------------------------------------------------------------------------------------

def speaker_of(blocks: list, who: str) -> str:
    for b in blocks:
        if b.get("type") == "section" and "accessory" in b and who in b["text"]["text"]:
            return b["accessory"]["value"]
    raise AssertionError(f"{who} not in the summary")


async def test_this_is_me_and_not_me(world):
    fake, _db, bot = world
    _rec_id, _thread_ts, msg_ts = world_state["meeting"]
    msg = fake.messages[(CHANNEL, msg_ts)]

    # "Not me" by someone else is refused; by the person it relabels to unknown.
    value = speaker_of(msg.blocks, "<@U1688>")
    n = len(fake.calls_to("chat.postEphemeral"))
    await bot.press("U1998", "not_me", value, channel=CHANNEL, message_ts=msg_ts)
    refused = (await fake.wait_for(lambda: fake.calls_to("chat.postEphemeral")[n:], what="refusal"))[0]
    assert refused.params["user"] == "U1998" and "Only <@U1688>" in refused.params["text"]
    assert "<@U1688>" in str(fake.messages[(CHANNEL, msg_ts)].blocks)
    await bot.press("U1688", "not_me", value, channel=CHANNEL, message_ts=msg_ts)
    await fake.wait_for(lambda: "<@U1688>" not in str(fake.messages[(CHANNEL, msg_ts)].blocks), what="update")
    assert "Unknown speaker 2" in str(fake.messages[(CHANNEL, msg_ts)].blocks)

    # "This is me" on an unknown speaker names the clicker for everyone and offers enrollment.
    blocks = fake.messages[(CHANNEL, msg_ts)].blocks
    value = speaker_of(blocks, "Unknown speaker 1")
    n = len(fake.calls_to("chat.postEphemeral"))
    await bot.press(UNKNOWN, "this_is_me", value, channel=CHANNEL, message_ts=msg_ts)
    await fake.wait_for(lambda: f"<@{UNKNOWN}>" in str(fake.messages[(CHANNEL, msg_ts)].blocks), what="relabel")
    offer = (await fake.wait_for(lambda: fake.calls_to("chat.postEphemeral")[n:], what="offer"))[0]
    assert offer.params["user"] == UNKNOWN and "Enroll from this recording" in str(offer.params["blocks"])
    # A second "This is me" by the same person on another speaker is refused.
    value2 = speaker_of(fake.messages[(CHANNEL, msg_ts)].blocks, "Unknown speaker")
    n = len(fake.calls_to("chat.postEphemeral"))
    await bot.press(UNKNOWN, "this_is_me", value2, channel=CHANNEL, message_ts=msg_ts)
    again = (await fake.wait_for(lambda: fake.calls_to("chat.postEphemeral")[n:], what="refusal"))[0]
    assert "already named" in again.params["text"]


# -- restart --------------------------------------------------------------------------------------

async def test_restart_in_the_middle_of_a_job_posts_one_summary(world, engine):
    fake, db, bot = world
    from storage.recordings import get_recording

    await bot.stop()  # the first instance goes away; a new one takes over mid-job
    first = await BotUnderTest(fake, bot.settings, db, engine).start()
    f = fake.add_file("planning.wav", "audio/wav", wav_bytes(meeting()[: 90 * SR]))
    event = first.share_event(f)
    await first.event(event, event_id="EvRestart")

    async def running():
        rec = await recording_for(db, f.id)
        return rec if rec and rec.engine_job_id else None

    while not await running():
        await asyncio.sleep(0.05)
    await first.stop()  # crash-like: the pipeline is cancelled with its lease held
    second = await BotUnderTest(fake, bot.settings, db, engine).start()
    world_state["bot"] = second
    try:
        rec = await wait_status(fake, db, f.id, {"posted", "failed"})
        assert rec.state.value == "posted", rec.error_message
        assert rec.attempts >= 2 or (await get_recording(db, rec.id)).attempts >= 2
        [reply] = thread_messages(fake, event["ts"])
        assert "Unknown speaker" in str(reply.blocks) or "<@" in str(reply.blocks)
        posts = [c for c in fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == event["ts"]]
        assert len(posts) == 1
        uploads = [c for c in fake.calls_to("files.completeUploadExternal") if c.params.get("thread_ts") == event["ts"]]
        assert len(uploads) == 1
    finally:
        bot.client = None
        world_state["restarted"] = second


async def test_enroll_delete_removes_the_voiceprint(world):
    _fake, db, _ = world
    bot = world_state.get("restarted") or world[2]
    from storage.voiceprints import get_voiceprint

    assert await get_voiceprint(db, "T0001", "U2033") is not None
    resp = await bot.command("U2033", "delete")
    assert "deleted" in (await resp.text())
    assert await get_voiceprint(db, "T0001", "U2033") is None
    assert "not enrolled" in await (await bot.command("U2033", "status")).text()


@pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
async def _stop_restarted():
    yield
    second = world_state.get("restarted")
    if second is not None:
        await second.stop()
