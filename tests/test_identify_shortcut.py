"""The "Identify speakers" message shortcut on a recording already in the channel (shared before Voice ID joined,
or posted by another app, which the automatic rule skips): the same job and the same one summary in that
message's thread, under the intake rules of a share (presser and bot in the channel, audio or video within
MAX_FILE_MB, at most once per recording), every refusal private. Signed `message_action` payloads to the real
endpoint, the fake Slack Web API, a real SQLite file, a fake engine."""
from __future__ import annotations

import asyncio
import itertools

import pytest_asyncio
from sqlmodel import func, select

from storage.models import Recording, utcnow
from storage.voiceprints import upsert_voiceprint
from testbed.fake_slack import BOT_ID, BOT_USER_ID, TEAM_ID
from tests.fake_engine import FakeEngine
from tests.slack_e2e_support import private_replies, wait_status

CHANNEL = "C0001"
ANN, BOB, OUTSIDER, APP_USER = "UANN", "UBOB", "UOUT", "UAPP"
OUTPUT = {"diarization": [{"speaker": "SPEAKER_00", "start": 0, "end": 6}, {"speaker": "SPEAKER_01", "start": 6, "end": 9}],
          "voiceprints": [{"speaker": "SPEAKER_00", "match": ANN, "confidence": {ANN: 90.0}},
                          {"speaker": "SPEAKER_01", "match": None, "confidence": {ANN: 10.0}}]}
_ts = itertools.count(1)


@pytest_asyncio.fixture(loop_scope="function")
async def world(tmp_path):
    from tests.slack_e2e_support import slack_world

    engine = FakeEngine(OUTPUT)
    async with slack_world(engine, tmp_path, max_file_mb=1) as (fake, db, bot):
        fake.members[CHANNEL] = [ANN, BOB, "UBOT"]
        await upsert_voiceprint(db, team_id=TEAM_ID, user_id=ANN, engine="fake", model_id="m", voiceprint="vp",
                                consent_at=utcnow(), clip_duration=5.0)
        yield fake, db, bot, engine


def message(fake, *files, text: str = "", user: str = BOB, **extra) -> dict:
    """A message in the channel as a message_action carries it."""
    return {"ts": f"1700000{next(_ts):03d}.000100", "user": user, "text": text,
            "files": [fake.file_object(f) for f in files], **extra}


async def shortcut(world, user: str, msg: dict) -> str:
    """Presses "Identify speakers" on `msg`; returns the private answer."""
    fake, _, bot, _ = world
    n = len(private_replies(fake, user))
    assert (await bot.shortcut(user, msg)).status == 200
    return (await fake.wait_for(lambda: private_replies(fake, user)[n:], what=f"answer to {user}"))[0]["text"]


async def rows(db) -> int:
    async with db.session() as s:
        return (await s.exec(select(func.count()).select_from(Recording))).one()


async def test_a_recording_shared_before_the_bot_joined_gets_its_summary_in_its_thread_once(world):
    fake, db, _, engine = world
    f = fake.add_file("standup.wav", "audio/wav", b"RIFF meeting audio")
    msg = message(fake, f, text="Standup from last week, 3 speakers")
    answer = await shortcut(world, ANN, msg)
    assert "Identifying the speakers of standup.wav" in answer and "thread" in answer
    rec = await wait_status(fake, db, f.id, {"posted", "failed"}, timeout=60)
    assert rec.state.value == "posted", rec.error_message
    summary = await fake.one_reply(CHANNEL, msg["ts"])
    assert summary.blocks[0]["text"]["text"] == "Who spoke in standup.wav" and f"<@{ANN}>" in str(summary.blocks)
    assert "Speaker count from the message: 3" in str(summary.blocks)
    assert engine.identify_requests[-1].num_speakers == 3 and rec.uploader_id == BOB

    # A second press (by anyone) says so privately and makes no second summary, no second job.
    again = await shortcut(world, BOB, msg)
    assert "already identified, or being identified" in again and "Identify again" in again
    await asyncio.sleep(1)
    assert len(fake.thread(CHANNEL, msg["ts"])) == 1 and len(engine.identify_requests) == 1 and await rows(db) == 1


async def test_two_presses_at_once_make_one_summary(world):
    fake, db, bot, engine = world
    f = fake.add_file("retro.m4a", "audio/mp4", b"RIFF meeting audio")
    msg = message(fake, f)
    n = {u: len(private_replies(fake, u)) for u in (ANN, BOB)}
    done = await asyncio.gather(bot.shortcut(ANN, msg), bot.shortcut(BOB, msg))
    assert [r.status for r in done] == [200, 200]
    answers = [(await fake.wait_for(lambda u=u: private_replies(fake, u)[n[u]:], what=u))[0]["text"] for u in n]
    assert sorted("already" in a for a in answers) == [False, True], answers
    await wait_status(fake, db, f.id, {"posted"}, timeout=60)
    await asyncio.sleep(1)
    assert len(fake.thread(CHANNEL, msg["ts"])) == 1 and len(engine.identify_requests) == 1


async def test_a_recording_another_app_posted_is_skipped_by_the_automatic_rule_and_taken_by_the_shortcut(world):
    fake, db, bot, _ = world
    f = fake.add_file("zoom-recording.mp4", "video/mp4", b"RIFF meeting audio", user=APP_USER)
    msg = message(fake, f, user=APP_USER, bot_id="B_ZOOM", text="Recording of the call (we were 2)")
    event = {"type": "message", "subtype": "file_share", "channel": CHANNEL, "channel_type": "channel", **msg}
    assert (await bot.event(event, event_id="EvZoom")).status == 200
    await asyncio.sleep(0.5)
    assert await rows(db) == 0  # the automatic rule skips what an app posts

    assert "Identifying the speakers of zoom-recording.mp4" in await shortcut(world, BOB, msg)
    rec = await wait_status(fake, db, f.id, {"posted"}, timeout=60)
    assert len(fake.thread(CHANNEL, msg["ts"])) == 1 and rec.min_speakers == 2


async def test_a_message_without_audio_or_video_is_answered_privately(world):
    fake, db, _, _ = world
    pdf = fake.add_file("agenda.pdf", "application/pdf", b"%PDF-1.4")
    for msg in (message(fake, text="3 speakers, no file"), message(fake, pdf)):
        assert "has no audio or video file" in await shortcut(world, ANN, msg)
    # The bot's own messages (a summary's chart, a transcript) are never recordings.
    png = fake.add_file("timeline.png", "image/png", b"png")
    mine = message(fake, png, user=BOT_USER_ID, bot_id=BOT_ID)
    assert "has no audio or video file" in await shortcut(world, ANN, mine)
    assert await rows(db) == 0 and not [m for m in fake.messages.values() if m.thread_ts]


async def test_intake_rules_hold_and_every_refusal_is_private(world):
    fake, db, _, engine = world
    f = fake.add_file("standup.wav", "audio/wav", b"RIFF meeting audio")
    msg = message(fake, f)

    # Someone outside the channel (they can read a public channel): told privately (by DM), nothing runs.
    answer = await shortcut(world, OUTSIDER, msg)
    assert "Only members of this channel" in answer and f"<#{CHANNEL}>" in answer
    # Voice ID not in the channel: asked to be invited.
    fake.members[CHANNEL] = [ANN, BOB]
    assert "/invite @voice-id" in await shortcut(world, ANN, msg)
    fake.members[CHANNEL] = [ANN, BOB, "UBOT"]

    # Larger than MAX_FILE_MB (1 here): refused before anything is stored or posted.
    big = fake.add_file("all-hands.wav", "audio/wav", b"RIFF" + bytes(2 * 1024 * 1024))
    answer = await shortcut(world, ANN, message(fake, big))
    assert "all-hands.wav is 2 MB; the limit is 1 MB." in answer and "Nothing was posted" in answer

    assert await rows(db) == 0 and engine.identify_requests == []
    assert not [c for c in fake.calls_to("chat.postMessage") if c.params.get("channel") == CHANNEL]


async def test_the_file_name_in_the_answer_is_escaped(world):
    fake, db, _, _ = world
    f = fake.add_file("<!here> *standup*.wav", "audio/wav", b"RIFF meeting audio")
    answer = await shortcut(world, ANN, message(fake, f))
    assert "<!here>" not in answer and "&lt;!here&gt;" in answer and "*standup*" not in answer
    await wait_status(fake, db, f.id, {"posted"}, timeout=60)


def test_every_manifest_lists_the_shortcut_under_the_callback_id_the_bot_listens_to():
    from pathlib import Path

    import yaml

    from bot.summary.blocks import IDENTIFY_SPEAKERS

    root = Path(__file__).resolve().parents[1]
    manifests = sorted(root.glob("manifest*.yml"))
    assert len(manifests) >= 2
    for path in manifests:
        m = yaml.safe_load(path.read_text())
        shortcuts = [s for s in m["features"]["shortcuts"] if s["callback_id"] == IDENTIFY_SPEAKERS]
        assert [(s["name"], s["type"]) for s in shortcuts] == [("Identify speakers", "message")], path.name
        assert len(shortcuts[0]["description"]) <= 80 and m["settings"]["interactivity"]["is_enabled"], path.name
