"""Speaker-count hints through the real endpoint (signed requests, the fake Slack Web API, a real SQLite file, a
fake engine that keeps the job requests it got): the count the sharing message states reaches the engine job
(`numSpeakers`, or `minSpeakers`/`maxSpeakers`) and the summary says it was used; a message without a clear count
changes nothing; "Identify again" opens a modal whose number of speakers goes to the re-run, under every rule
"Identify again" had (channel members only, one summary)."""
from __future__ import annotations

import itertools

import pytest_asyncio
from sqlmodel import select

from bot.schema import DiarizeRequest
from storage.models import AuditAction, AuditEvent, utcnow
from storage.recordings import get_recording
from storage.voiceprints import upsert_voiceprint
from testbed.fake_slack import TEAM_ID
from tests.fake_engine import FakeEngine
from tests.slack_e2e_support import press_identify_again, slack_world, wait_status

CHANNEL = "C0001"
ANN, BOB, OUTSIDER = "UANN", "UBOB", "UOUT"
OUTPUT = {"diarization": [{"speaker": "SPEAKER_00", "start": 0, "end": 6}, {"speaker": "SPEAKER_01", "start": 6, "end": 9}],
          "voiceprints": [{"speaker": "SPEAKER_00", "match": ANN, "confidence": {ANN: 90.0}},
                          {"speaker": "SPEAKER_01", "match": None, "confidence": {ANN: 10.0}}]}
_events = itertools.count(1)


class HintedEngine(FakeEngine):
    """The fake engine, with diarize-only jobs too (for a channel where nobody enrolled)."""

    def __init__(self):
        super().__init__(OUTPUT)
        self.diarize_requests: list[DiarizeRequest] = []

    async def submit_diarize(self, request: DiarizeRequest):
        self.diarize_requests.append(request)
        return self._job({"diarization": OUTPUT["diarization"]})


@pytest_asyncio.fixture(loop_scope="function")
async def world(tmp_path):
    engine = HintedEngine()
    async with slack_world(engine, tmp_path, identify_again_recording_cooldown_minutes=0,
                           identify_again_person_cooldown_minutes=0) as (fake, db, bot):
        fake.members[CHANNEL] = [ANN, BOB, "U0", "UBOT"]
        yield fake, db, bot, engine


async def enroll_ann(db) -> None:
    await upsert_voiceprint(db, team_id=TEAM_ID, user_id=ANN, engine="fake", model_id="m", voiceprint="vp",
                            consent_at=utcnow(), clip_duration=5.0)


async def share(world, text: str):
    """Shares a recording with `text` as the message; returns its posted recording and its summary's context lines."""
    fake, db, bot, _ = world
    f = fake.add_file("standup.wav", "audio/wav", b"RIFF meeting audio")
    event = bot.share_event(f) | {"text": text}
    assert (await bot.event(event, event_id=f"EvHint{next(_events)}")).status == 200
    rec = await wait_status(fake, db, f.id, {"posted", "failed"}, timeout=60)
    assert rec.state.value == "posted", rec.error_message
    return rec, context_lines(await fake.one_reply(CHANNEL, rec.message_ts))


def context_lines(reply) -> list[str]:
    return [b["elements"][0]["text"] for b in reply.blocks if b["type"] == "context"]


def counts(request) -> dict:
    return {k: v for k, v in request.wire().items() if k in ("numSpeakers", "minSpeakers", "maxSpeakers")}


async def test_the_count_in_the_message_reaches_the_engine_and_the_summary_says_so(world):
    _, db, _, engine = world
    await enroll_ann(db)
    rec, lines = await share(world, "Weekly sync, we were three")
    assert counts(engine.identify_requests[-1]) == {"numSpeakers": 3}
    assert "Speaker count from the message: 3" in lines
    assert (rec.min_speakers, rec.max_speakers, rec.speakers_from) == (3, 3, "message")

    rec, lines = await share(world, "Planning, 3-4 people")
    assert counts(engine.identify_requests[-1]) == {"minSpeakers": 3, "maxSpeakers": 4}
    assert "Speaker count from the message: 3–4" in lines


async def test_a_message_without_a_clear_count_changes_nothing(world):
    _, db, _, engine = world
    await enroll_ann(db)
    for text in ("3 agenda items", "3 speakers, no wait 4", "about 4 people", "12 people", ""):
        rec, lines = await share(world, text)
        assert counts(engine.identify_requests[-1]) == {}, text
        assert not [line for line in lines if line.startswith("Speaker count")], text
        assert rec.min_speakers is None and "speakerHint" not in rec.result


async def test_a_diarize_only_job_gets_the_count_too(world):
    _, _, _, engine = world
    rec, lines = await share(world, "two of us")
    assert rec.diarize_only and counts(engine.diarize_requests[-1]) == {"numSpeakers": 2}
    assert "Speaker count from the message: 2" in lines


async def test_identify_again_asks_for_the_number_of_speakers_and_passes_it_to_the_rerun(world):
    fake, db, bot, engine = world
    await enroll_ann(db)
    rec, _ = await share(world, "4 people")
    value, ts = str(rec.id), rec.reply_ts

    answer = await press_identify_again(bot, fake, BOB, value, ts, speakers=2)
    assert "Identifying the speakers again" in answer["text"]
    [modal] = [c.params["view"] for c in fake.calls_to("views.open") if c.params.get("trigger_id") == f"trig-{BOB}"]
    [field] = [b for b in modal["blocks"] if b.get("block_id") == "speakers"]
    assert field["optional"] and field["element"]["type"] == "number_input"
    assert (field["element"]["min_value"], field["element"]["max_value"]) == ("1", "10")
    assert "count from the message: 4" in field["hint"]["text"]

    rec = await wait_status(fake, db, rec.file_id, {"posted"}, timeout=60)
    await fake.wait_for(lambda: len(engine.identify_requests) == 2, what="the re-run's engine job")
    assert counts(engine.identify_requests[-1]) == {"numSpeakers": 2}
    new_line = "Speaker count set with Identify again: 2"
    await fake.wait_for(lambda: any(new_line in context_lines(m) for m in fake.thread(CHANNEL, rec.message_ts)),
                        what="the summary's new line")
    summary = await fake.one_reply(CHANNEL, rec.message_ts)
    assert summary.ts == ts and new_line in context_lines(summary)  # the same summary, edited in place
    assert (rec.min_speakers, rec.speakers_from) == (2, "identify_again")
    async with db.session() as s:
        [audited] = (await s.exec(select(AuditEvent).where(AuditEvent.action == AuditAction.reidentify))).all()
    assert (audited.actor_id, audited.detail) == (BOB, {"speakers": 2})

    # Left empty, the modal keeps the recording's count (and says which it is).
    await press_identify_again(bot, fake, ANN, value, ts)
    await fake.wait_for(lambda: len(engine.identify_requests) == 3, what="the second re-run's engine job")
    assert counts(engine.identify_requests[-1]) == {"numSpeakers": 2}
    modal = [c.params["view"] for c in fake.calls_to("views.open") if c.params.get("trigger_id") == f"trig-{ANN}"][-1]
    assert "set with Identify again: 2" in str(modal)
    await wait_status(fake, db, rec.file_id, {"posted"}, timeout=60)


async def test_the_modal_refuses_a_number_outside_one_to_ten_and_nothing_runs(world):
    fake, db, bot, engine = world
    await enroll_ann(db)
    rec, _ = await share(world, "")
    for bad in ("11", "0", "2.5", "many"):
        answer = await press_identify_again(bot, fake, BOB, str(rec.id), rec.reply_ts, speakers=bad)
        assert answer["text"] == "errors: Give a whole number from 1 to 10, or leave it empty.", bad
    after = await get_recording(db, rec.id)
    assert after.state.value == "posted" and after.min_speakers is None and len(engine.identify_requests) == 1


async def test_identify_again_with_a_number_is_still_for_channel_members_only(world):
    fake, db, bot, engine = world
    await enroll_ann(db)
    rec, _ = await share(world, "3 speakers")
    answer = await press_identify_again(bot, fake, OUTSIDER, str(rec.id), rec.reply_ts, speakers=5)
    assert "Only members of this channel" in answer["text"]
    after = await get_recording(db, rec.id)
    assert (after.state.value, after.min_speakers, after.speakers_from) == ("posted", 3, "message")
    assert len(engine.identify_requests) == 1


async def test_the_hint_is_stored_with_the_row_and_identify_again_replaces_it_on_both_databases(db):
    from storage.recordings import claim_next, complete, enqueue_recording, mark_posted, requeue_identify

    async def new(file_id: str, speakers=None):
        return await enqueue_recording(db, team_id=TEAM_ID, channel_id=CHANNEL, file_id=file_id, file_name="a.wav",
                                       uploader_id="U0", message_ts="1700000000.000100", engine="fake",
                                       speakers=speakers)

    rec, created = await new("FHINT1", (3, 4))
    assert created and (rec.min_speakers, rec.max_speakers, rec.speakers_from) == (3, 4, "message")
    again, created = await new("FHINT1", (5, 5))  # a retried event: the row as it was
    assert not created and (again.min_speakers, again.max_speakers) == (3, 4)
    plain, _ = await new("FHINT2")
    assert (plain.min_speakers, plain.max_speakers, plain.speakers_from) == (None, None, None)

    assert (await claim_next(db, "w", 60)).id == rec.id
    assert await complete(db, rec.id, "w", OUTPUT, 9.0) and await mark_posted(db, rec.id, "w", "1700000001.000100")
    await requeue_identify(db, rec.id, actor_id=BOB)  # no number: the message's hint stays
    assert ((await get_recording(db, rec.id)).min_speakers, (await get_recording(db, rec.id)).max_speakers) == (3, 4)
    assert (await claim_next(db, "w", 60)).id == plain.id  # the re-run waits behind the recording already queued
    assert (await claim_next(db, "w", 60)).id == rec.id
    assert await complete(db, rec.id, "w", OUTPUT, 9.0) and await mark_posted(db, rec.id, "w", "1700000002.000100")
    await requeue_identify(db, rec.id, actor_id=BOB, speakers=6)
    after = await get_recording(db, rec.id)
    assert (after.min_speakers, after.max_speakers, after.speakers_from) == (6, 6, "identify_again")
