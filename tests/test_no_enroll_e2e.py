"""A summary even when nobody is enrolled, and "Identify again" once someone has: signed requests to the real
endpoint, the fake Slack Web API, a real SQLite file, the real local engine and real speech. The tests run in
order and share one channel and one recording."""
from __future__ import annotations

from datetime import timedelta

import pytest
import pytest_asyncio

from bot.engines.local import PIPELINE_MODELS
from storage.thread import CHART, get_output
from testbed.fake_slack import TEAM_ID, FakeSlack
from tests.slack_e2e_support import (
    concat,
    enroll,
    enrollment_clip,
    press_identify_again,
    slack_world,
    wait_status,
    wav_bytes,
)

CHANNEL = "C0001"
SPEAKING = {"U1688": "1688", "U1998": "1998"}  # the two people in the recording
ABSENT = "U2033"  # in the channel and (later) enrolled, but not in the recording
OUTSIDER = "UOUT"  # not in the channel

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.speech]

state: dict = {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(local_engine, tmp_path_factory):
    async with slack_world(local_engine, tmp_path_factory.mktemp("no-enroll")) as (fake, db, bot):
        fake.members[CHANNEL] = [*SPEAKING, ABSENT, "UBOT"]
        fake.users.update({"U1688": "Ann", "U1998": "Bea", ABSENT: "Cid"})
        yield fake, db, bot


def summary_blocks(fake: FakeSlack) -> list:
    return fake.messages[(CHANNEL, state["summary_ts"])].blocks


def identify_again_value(blocks: list) -> str:
    for b in blocks:
        for el in b.get("elements") or []:
            if el.get("action_id") == "identify_again":
                return el["value"]
    raise AssertionError("no Identify again button on the summary")


def thread_posts(fake: FakeSlack) -> list:
    return [c for c in fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == state["thread_ts"]]


def chart_uploads(fake: FakeSlack) -> list:
    return [c for c in fake.calls_to("files.completeUploadExternal") if c.params.get("thread_ts") == state["thread_ts"]]


async def test_nobody_enrolled_gets_a_numbered_summary_with_an_invitation_and_a_chart(world):
    fake, db, bot = world
    audio = concat([(r, i) for i in (2, 3, 4, 5) for r in SPEAKING.values()], pause=0.6)
    f = fake.add_file("kickoff.wav", "audio/wav", wav_bytes(audio))
    event = bot.share_event(f)
    assert (await bot.event(event, event_id="EvNoEnroll")).status == 200
    rec = await wait_status(fake, db, f.id, {"posted", "failed"})
    assert rec.state.value == "posted", rec.error_message
    assert rec.diarize_only
    reply = await fake.one_reply(CHANNEL, event["ts"])
    text = str(reply.blocks)
    assert "Speaker 1" in text and "Speaker 2" in text and "Unknown speaker" not in text
    assert "talk time" in text and "turns" in text and "This is me" in text and "<@" not in text
    assert "`/enroll`" in text and "Identify again" in text
    assert "Nobody in this channel has enrolled" not in reply.text
    pipeline = f"diarization pipeline {bot.engine.diarization} ({PIPELINE_MODELS[bot.engine.diarization]})"
    assert f"Engine: local · {pipeline} · no voiceprints compared" in text, "provenance: nobody was compared"
    [upload] = fake.calls_to("files.completeUploadExternal")
    assert upload.params["thread_ts"] == event["ts"]
    chart = await get_output(db, rec.id, CHART)
    assert fake.files[chart.file_id].data.startswith(b"\x89PNG")
    state.update(file_id=f.id, rec_id=rec.id, thread_ts=event["ts"], summary_ts=reply.ts,
                 first_chart=chart.file_id)


async def test_identify_again_while_nobody_is_enrolled_explains_instead(world):
    fake, db, bot = world
    from storage.recordings import get_recording

    before = str(summary_blocks(fake))
    answer = await press_identify_again(bot, fake, "U1998", identify_again_value(summary_blocks(fake)),
                         state["summary_ts"])
    assert "Nobody in this channel has enrolled" in answer["text"] and "/enroll" in answer["text"]
    rec = await get_recording(db, state["rec_id"])
    assert rec.state.value == "posted" and rec.attempts == 1
    assert str(summary_blocks(fake)) == before


async def test_identify_again_by_someone_outside_the_channel_is_refused(world):
    fake, db, bot = world
    from storage.recordings import get_recording

    for user, parts in (("U1688", [("1688", 0)]), (ABSENT, [("2033", 0), ("2033", 1)])):
        assert "voiceprint is saved" in await enroll(bot, fake, user, enrollment_clip(parts))
    before = str(summary_blocks(fake))
    answer = await press_identify_again(bot, fake, OUTSIDER, identify_again_value(summary_blocks(fake)),
                         state["summary_ts"])
    assert "Only members of this channel" in answer["text"]
    rec = await get_recording(db, state["rec_id"])
    assert rec.state.value == "posted" and rec.attempts == 1 and rec.diarize_only
    assert str(summary_blocks(fake)) == before


async def test_identify_again_names_the_enrolled_speaker_in_the_same_summary(world):
    fake, db, bot = world
    answer = await press_identify_again(bot, fake, "U1998", identify_again_value(summary_blocks(fake)),
                         state["summary_ts"])
    assert "summary will be updated" in answer["text"], answer["text"]
    rec = await wait_status(fake, db, state["file_id"], {"posted", "failed"})
    assert rec.state.value == "posted", rec.error_message
    assert not rec.diarize_only
    text = str(summary_blocks(fake))
    assert "<@U1688>" in text and f"<@{ABSENT}>" not in text and "<@U1998>" not in text
    assert "Unknown speaker 1" in text and "Nobody in this channel had enrolled" not in text
    pipeline = f"diarization pipeline {bot.engine.diarization} ({PIPELINE_MODELS[bot.engine.diarization]})"
    assert f"Engine: local · {pipeline} · match threshold {bot.services.threshold:g}" in text, "the new provenance"
    assert rec.result["provenance"]["threshold"] == bot.services.threshold
    # One summary message, edited in place; one chart per run: the redraw replaced the first chart.
    assert len(fake.thread(CHANNEL, state["thread_ts"])) == 1 and len(thread_posts(fake)) == 1
    assert len(chart_uploads(fake)) == 2
    chart = await get_output(db, rec.id, CHART)
    assert state["first_chart"] not in fake.files and chart.file_id in fake.files
    assert chart.file_id != state["first_chart"]


async def test_identify_again_when_the_file_is_gone_from_slack_says_so(world):
    fake, db, bot = world
    from storage.recordings import get_recording

    gone = fake.files.pop(state["file_id"])
    try:
        answer = await press_identify_again(bot, fake, "U1998", identify_again_value(summary_blocks(fake)),
                             state["summary_ts"])
    finally:
        fake.files[gone.id] = gone
    assert "kickoff.wav is no longer in Slack" in answer["text"] and "no copy" in answer["text"]
    assert (await get_recording(db, state["rec_id"])).state.value == "posted"


async def test_identify_again_after_the_result_was_purged_says_so(world):
    fake, db, bot = world
    from storage.models import utcnow
    from storage.recordings import get_recording
    from storage.retention import purge_expired

    counts = await purge_expired(db, result_days=30, audit_days=365, now=utcnow() + timedelta(days=31))
    assert counts["results"] >= 1
    answer = await press_identify_again(bot, fake, "U1688", identify_again_value(summary_blocks(fake)),
                         state["summary_ts"])
    assert "deleted under the retention policy" in answer["text"]
    rec = await get_recording(db, state["rec_id"])
    assert rec.state.value == "posted" and rec.result is None
    assert len(thread_posts(fake)) == 1 and TEAM_ID == rec.team_id
