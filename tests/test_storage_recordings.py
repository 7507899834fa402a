"""The recording queue on both databases: enqueue once, claim, heartbeat, complete, post, fail, expire."""
from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from sqlalchemy import update

from storage.database import Database
from storage.models import AuditAction, AuditEvent, Recording, RecordingStatus, utcnow
from storage.recordings import (
    LEASE_EXPIRED,
    RecordingNotFound,
    claim_next,
    complete,
    count_by_status,
    enqueue_recording,
    fail,
    find_recording,
    get_recording,
    heartbeat,
    mark_posted,
    requeue_expired,
)
from storage.thread import CHART, chart_posted, get_output, set_relabel, set_reply_ts, start_chart

RESULT = {
    "diarization": [{"speaker": "SPEAKER_00", "start": 0.0, "end": 2.5},
                    {"speaker": "SPEAKER_01", "start": 2.5, "end": 4.0}],
    "identification": [{"speaker": "U1", "start": 0.0, "end": 2.5, "diarizationSpeaker": "SPEAKER_00",
                        "match": "U1"}],
    "voiceprints": [{"speaker": "SPEAKER_00", "match": "U1", "confidence": {"U1": 91.0}}],
}


async def enqueue(db: Database, file_id: str = "F1", team_id: str = "T1", **kw) -> tuple[Recording, bool]:
    return await enqueue_recording(db, team_id=team_id, channel_id="C1", file_id=file_id,
                                   file_name=kw.pop("file_name", "standup.m4a"), uploader_id="U1", message_ts="1700000000.000100",
                                   engine="local", **kw)


async def test_enqueue_then_duplicate_returns_existing_row(db: Database):
    rec, created = await enqueue(db, thread_ts="1700000000.000001")
    assert created and rec.id and rec.status == RecordingStatus.queued and rec.attempts == 0
    assert rec.created_at.tzinfo is not None and rec.created_at.utcoffset() == timedelta(0)
    again, created_again = await enqueue(db, file_name="renamed.m4a")
    assert not created_again and again.id == rec.id and again.file_name == "standup.m4a"
    other_team, created_other = await enqueue(db, team_id="T2")
    assert created_other and other_team.id != rec.id
    assert (await find_recording(db, "T1", "F1")).id == rec.id
    assert await find_recording(db, "T1", "nope") is None


async def test_enqueue_refuses_missing_ids_with_a_clear_message(db: Database):
    with pytest.raises(ValueError, match="without file_id"):
        await enqueue(db, file_id="")


async def test_full_lifecycle_queued_running_succeeded_posted(db: Database):
    rec, _ = await enqueue(db)
    await set_reply_ts(db, rec.id, "1700000001.000200")
    claimed = await claim_next(db, "worker-a", 60)
    assert claimed.id == rec.id and claimed.status == RecordingStatus.running and claimed.attempts == 1
    assert claimed.lease_owner == "worker-a" and claimed.lease_expires_at > utcnow()
    assert claimed.reply_ts == "1700000001.000200"
    assert await claim_next(db, "worker-b", 60) is None

    assert await heartbeat(db, rec.id, "worker-a", 120, progress=0.5, engine_job_id="job-1")
    assert not await heartbeat(db, rec.id, "worker-b", 120)
    mid = await get_recording(db, rec.id)
    assert mid.progress == 0.5 and mid.engine_job_id == "job-1"
    assert mid.lease_expires_at > claimed.lease_expires_at

    assert not await complete(db, rec.id, "worker-b", RESULT, 4.0)
    assert await complete(db, rec.id, "worker-a", RESULT, 4.0)
    done = await get_recording(db, rec.id)
    assert done.status == RecordingStatus.succeeded and done.result == RESULT and done.duration == 4.0
    assert done.lease_owner == "worker-a" and done.finished_at is not None and done.progress == 1.0
    assert await claim_next(db, "worker-b", 60) is None, "the completing worker still holds the lease to post"

    assert await start_chart(db, rec.id, "worker-a") and await chart_posted(db, rec.id, "worker-a", "F_CHART", 0)
    assert await mark_posted(db, rec.id, "worker-a", "1700000002.000300")
    posted = await get_recording(db, rec.id)
    assert posted.status == RecordingStatus.posted and posted.posted_ts == "1700000002.000300"
    assert (await get_output(db, rec.id, CHART)).file_id == "F_CHART" and posted.result == RESULT
    assert posted.lease_owner is None and posted.lease_expires_at is None and posted.engine_job_id is None
    assert not await mark_posted(db, rec.id, "worker-a", "again")
    assert await claim_next(db, "worker-a", 60) is None


async def test_claims_oldest_first(db: Database):
    ids = [(await enqueue(db, file_id=f"F{i}"))[0].id for i in range(3)]
    assert [(await claim_next(db, "w", 60)).id for _ in range(3)] == ids
    assert await claim_next(db, "w", 60) is None


async def test_retryable_failure_requeues_then_fails_when_attempts_are_used_up(db: Database):
    rec, _ = await enqueue(db)
    for attempt in (1, 2):
        claimed = await claim_next(db, "w", 60)
        assert claimed.attempts == attempt
        after = await fail(db, rec.id, "w", "engine_unavailable", "The engine is down.", retry=True, max_attempts=3)
        assert after.status == RecordingStatus.queued and after.error_code == "engine_unavailable"
        assert after.lease_owner is None
    await claim_next(db, "w", 60)
    final = await fail(db, rec.id, "w", "engine_unavailable", "The engine is down.", retry=True, max_attempts=3)
    assert final.status == RecordingStatus.failed and final.attempts == 3 and final.finished_at is not None
    assert (await get_recording(db, rec.id)).error_message == "The engine is down."
    assert await claim_next(db, "w", 60) is None


async def test_final_failure_and_lost_lease(db: Database):
    rec, _ = await enqueue(db)
    await claim_next(db, "w", 60)
    unchanged = await fail(db, rec.id, "someone-else", "x", "y", retry=False, max_attempts=3)
    assert unchanged.status == RecordingStatus.running and unchanged.error_code is None
    failed = await fail(db, rec.id, "w", "bad_media", "This file has no audio track.", retry=False, max_attempts=3)
    assert failed.status == RecordingStatus.failed and failed.attempts == 1
    with pytest.raises(RecordingNotFound):
        await fail(db, 999_999, "w", "x", "y", retry=False, max_attempts=3)


async def test_failed_post_is_retried_as_succeeded_and_bounded(db: Database):
    rec, _ = await enqueue(db)
    await claim_next(db, "w", 60)
    await complete(db, rec.id, "w", RESULT, 4.0)
    after = await fail(db, rec.id, "w", "slack_error", "Slack said no.", retry=True, max_attempts=3)
    assert after.status == RecordingStatus.succeeded and after.lease_owner is None and after.attempts == 2
    again = await claim_next(db, "w2", 60)
    assert again.id == rec.id and again.status == RecordingStatus.succeeded and again.attempts == 2
    final = await fail(db, rec.id, "w2", "slack_error", "Slack said no.", retry=True, max_attempts=3)
    assert final.status == RecordingStatus.failed and final.result == RESULT


async def test_expired_lease_is_requeued_reclaimed_and_finally_failed(db: Database):
    rec, _ = await enqueue(db)
    first = await claim_next(db, "crashed", 30)
    later = utcnow() + timedelta(seconds=31)
    assert await requeue_expired(db, max_attempts=2, now=utcnow()) == 0, "a live lease is left alone"
    assert await requeue_expired(db, max_attempts=2, now=later) == 1
    requeued = await get_recording(db, rec.id)
    assert requeued.status == RecordingStatus.queued and requeued.error_code == LEASE_EXPIRED
    assert not await heartbeat(db, rec.id, "crashed", 30), "the crashed worker has lost its lease"

    second = await claim_next(db, "survivor", 30)
    assert second.id == first.id and second.attempts == 2 and second.lease_owner == "survivor"
    assert await requeue_expired(db, max_attempts=2, now=utcnow() + timedelta(seconds=31)) == 1
    gone = await get_recording(db, rec.id)
    assert gone.status == RecordingStatus.failed and gone.error_code == LEASE_EXPIRED
    assert "2 attempts" in gone.error_message


async def test_expired_lease_on_succeeded_is_cleared_so_another_worker_posts(db: Database):
    rec, _ = await enqueue(db)
    await claim_next(db, "crashed", 30)
    await complete(db, rec.id, "crashed", RESULT, 4.0)
    assert await requeue_expired(db, max_attempts=3, now=utcnow() + timedelta(seconds=31)) == 1
    poster = await claim_next(db, "poster", 30)
    assert poster.id == rec.id and poster.status == RecordingStatus.succeeded and poster.attempts == 1
    assert await mark_posted(db, rec.id, "poster", "1.2")


async def test_relabel_checks_the_speaker_and_audits(db: Database):
    rec, _ = await enqueue(db)
    with pytest.raises(ValueError, match="no result"):
        await set_relabel(db, rec.id, "SPEAKER_00", "U9")
    await claim_next(db, "w", 60)
    await complete(db, rec.id, "w", RESULT, 4.0)
    with pytest.raises(ValueError, match="SPEAKER_07.*SPEAKER_00, SPEAKER_01"):
        await set_relabel(db, rec.id, "SPEAKER_07", "U9")
    await set_relabel(db, rec.id, "SPEAKER_01", "U9")
    relabelled = await set_relabel(db, rec.id, "SPEAKER_00", None, actor_id="U1")
    assert relabelled.relabels == {"SPEAKER_01": "U9", "SPEAKER_00": None}
    assert (await get_recording(db, rec.id)).relabels == {"SPEAKER_01": "U9", "SPEAKER_00": None}
    with pytest.raises(RecordingNotFound):
        await set_relabel(db, 999_999, "SPEAKER_00", None)
    async with db.session() as s:
        from sqlmodel import select

        events = (await s.exec(select(AuditEvent).order_by(AuditEvent.id))).all()
    assert [(e.action, e.actor_id, e.detail["speaker"]) for e in events] == [
        (AuditAction.claim, "U9", "SPEAKER_01"), (AuditAction.unclaim, "U1", "SPEAKER_00")]


async def test_reply_ts_counts_and_bad_arguments(db: Database):
    with pytest.raises(RecordingNotFound):
        await set_reply_ts(db, 424242, "1.1")
    assert await get_recording(db, 424242) is None
    await enqueue(db, "A")
    await enqueue(db, "B")
    await claim_next(db, "w", 60)
    counts = await count_by_status(db)
    assert counts["queued"] == 1 and counts["running"] == 1 and counts["posted"] == 0
    with pytest.raises(ValueError, match="lease_seconds"):
        await claim_next(db, "w", 0)
    with pytest.raises(ValueError, match="owner"):
        await claim_next(db, "", 60)


async def test_datetimes_are_aware_utc_and_naive_ones_are_refused(db: Database):
    rec, _ = await enqueue(db)
    async with db.session() as s:
        with pytest.raises(Exception, match="naive datetime"):
            await s.exec(update(Recording).where(Recording.id == rec.id)
                         .values(updated_at=utcnow().replace(tzinfo=None)))
    fetched = await get_recording(db, rec.id)
    assert fetched.created_at.tzinfo == UTC
    assert abs(fetched.created_at - rec.created_at) < timedelta(milliseconds=1)
