""""Identify again" is no lever for keeping the engine busy: a re-run takes a new place at the back of the queue,
each recording waits a cooldown after its last re-run ends, each person a cooldown after their last accepted
press, and the presser is told how long. The queue rules on both databases; the answers through the real
endpoint with signed requests and the fake Slack Web API."""
from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import pytest
import pytest_asyncio

from storage.database import Database
from storage.models import AuditAction, AuditEvent, RecordingStatus, utcnow
from storage.recordings import (
    IdentifyRefused,
    IdentifyTooSoon,
    claim_next,
    complete,
    enqueue_recording,
    get_recording,
    mark_posted,
    requeue_identify,
)
from testbed.fake_slack import TEAM_ID, FakeFile
from tests.fake_engine import FakeEngine
from tests.slack_e2e_support import press_identify_again, slack_world

RESULT = {"diarization": [{"speaker": "SPEAKER_00", "start": 0.0, "end": 2.0}],
          "voiceprints": [{"speaker": "SPEAKER_00", "match": None, "confidence": {}}]}
HALF_HOUR, FIVE_MINUTES = timedelta(minutes=30), timedelta(minutes=5)
_files = itertools.count(1)


async def enqueue(db: Database, team_id: str = TEAM_ID, channel_id: str = "C0001"):
    rec, _ = await enqueue_recording(db, team_id=team_id, channel_id=channel_id, file_id=f"FLIM{next(_files)}",
                                     file_name="standup.wav", uploader_id="U1", message_ts="1700000000.000100",
                                     engine="fake")
    return rec


async def run_to_posted(db: Database, rec_id: int) -> None:
    """A worker takes the recording (it must be the next in the queue), and its summary is posted."""
    claimed = await claim_next(db, "w", 60)
    assert claimed is not None and claimed.id == rec_id, claimed and claimed.id
    assert await complete(db, rec_id, "w", RESULT, 2.0)
    assert await mark_posted(db, rec_id, "w", "1700000001.000100")


async def posted(db: Database, **kw) -> int:
    rec = await enqueue(db, **kw)
    await run_to_posted(db, rec.id)
    return rec.id


async def test_a_rerun_queues_behind_the_recordings_already_waiting(db: Database):
    old = await posted(db)
    waiting = [(await enqueue(db)).id for _ in range(2)]
    await requeue_identify(db, old, actor_id="U1")
    for rec_id in [*waiting, old]:  # behind both, although it was shared first
        await run_to_posted(db, rec_id)


async def test_a_recording_waits_its_cooldown_after_a_rerun_ends(db: Database):
    rec_id = await posted(db)
    first = (await get_recording(db, rec_id)).notified_at
    # The first summary is no re-run: pressing right after it is fine.
    await requeue_identify(db, rec_id, actor_id="U1", recording_cooldown=HALF_HOUR)
    await run_to_posted(db, rec_id)
    ended = (await get_recording(db, rec_id)).notified_at
    assert ended > first

    with pytest.raises(IdentifyTooSoon) as too_soon:  # anyone, at once
        await requeue_identify(db, rec_id, actor_id="U2", recording_cooldown=HALF_HOUR)
    assert too_soon.value.retry_at == ended + HALF_HOUR and not too_soon.value.per_person
    with pytest.raises(IdentifyTooSoon):
        await requeue_identify(db, rec_id, actor_id="U2", recording_cooldown=HALF_HOUR,
                               now=ended + HALF_HOUR - timedelta(seconds=1))
    rec = await get_recording(db, rec_id)
    assert rec.state is RecordingStatus.posted and rec.attempts == 1

    again = await requeue_identify(db, rec_id, actor_id="U2", recording_cooldown=HALF_HOUR, now=ended + HALF_HOUR)
    assert again.state is RecordingStatus.queued


async def test_a_person_waits_their_cooldown_between_presses_on_any_recording(db: Database):
    first, second, third, fourth = [await posted(db) for _ in range(4)]
    elsewhere = await posted(db, team_id="T0002")
    pressed = (await requeue_identify(db, first, actor_id="U1", person_cooldown=FIVE_MINUTES)).queued_at

    with pytest.raises(IdentifyTooSoon) as too_soon:
        await requeue_identify(db, second, actor_id="U1", person_cooldown=FIVE_MINUTES)
    assert too_soon.value.per_person and too_soon.value.retry_at == pressed + FIVE_MINUTES
    assert (await get_recording(db, second)).state is RecordingStatus.posted
    # Someone else may; and in another workspace the same user id is another person.
    await requeue_identify(db, second, actor_id="U2", person_cooldown=FIVE_MINUTES)
    await requeue_identify(db, elsewhere, actor_id="U1", person_cooldown=FIVE_MINUTES)

    # A refused press costs nothing: U3 is refused on a queued recording, then may press another at once.
    with pytest.raises(IdentifyRefused):
        await requeue_identify(db, first, actor_id="U3", person_cooldown=FIVE_MINUTES)
    await requeue_identify(db, third, actor_id="U3", person_cooldown=FIVE_MINUTES)

    later = await requeue_identify(db, fourth, actor_id="U1", person_cooldown=FIVE_MINUTES,
                                   now=pressed + FIVE_MINUTES)
    assert later.state is RecordingStatus.queued


async def test_simultaneous_presses_by_one_person_start_one_rerun(db: Database):
    recs = [await posted(db) for _ in range(4)]
    outcomes = await asyncio.gather(*(requeue_identify(db, r, actor_id="U1", person_cooldown=FIVE_MINUTES)
                                      for r in recs), return_exceptions=True)
    assert [type(o) for o in outcomes].count(IdentifyTooSoon) == 3, outcomes
    states = [(await get_recording(db, r)).state for r in recs]
    assert states.count(RecordingStatus.queued) == 1
    async with db.session() as s:
        from sqlmodel import select

        audited = (await s.exec(select(AuditEvent).where(AuditEvent.action == AuditAction.reidentify))).all()
    assert len(audited) == 1


# -- through the endpoint -----------------------------------------------------------------------------

CHANNEL = "C0001"


@pytest_asyncio.fixture(loop_scope="function")
async def world(tmp_path):
    from storage.voiceprints import upsert_voiceprint

    async with slack_world(FakeEngine(), tmp_path, run_jobs=False, identify_again_recording_cooldown_minutes=30,
                           identify_again_person_cooldown_minutes=5) as (fake, db, bot):
        fake.members[CHANNEL] = ["U1", "U2", "UBOT"]
        await upsert_voiceprint(db, team_id=TEAM_ID, user_id="U1", engine="fake", model_id="m", voiceprint="vp",
                                consent_at=utcnow(), clip_duration=5.0)
        yield fake, db, bot


async def identify_again(world, user: str, rec_id: int) -> str:
    fake, db, bot = world
    rec = await get_recording(db, rec_id)
    fake.files[rec.file_id] = FakeFile(rec.file_id, rec.file_name, "audio/wav", b"RIFF")  # still in Slack
    return (await press_identify_again(bot, fake, user, str(rec_id), "1700000001.000100"))["text"]


async def test_the_presser_is_told_how_long_to_wait(world):
    _fake, db, _bot = world
    first, second = await posted(db), await posted(db)

    assert "summary will be updated" in await identify_again(world, "U1", first)
    answer = await identify_again(world, "U1", second)
    assert "You started *Identify again* recently" in answer and "press it again in 5 minutes" in answer, answer
    assert (await get_recording(db, second)).state is RecordingStatus.posted

    await run_to_posted(db, first)  # the re-run ends; the recording now waits half an hour, for everyone
    answer = await identify_again(world, "U2", first)
    assert "This recording was identified again recently" in answer and "again in 30 minutes" in answer, answer
    assert (await get_recording(db, first)).state is RecordingStatus.posted
