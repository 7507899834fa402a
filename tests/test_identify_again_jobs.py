"""The no-enroll job and "Identify again" under faults, in process on both databases: a diarize-only first run,
a re-run taken over after a crash still ends with one summary message and one chart per run, two presses
make one job, a failed re-run leaves the earlier summary with a note, and the re-run never extends retention."""
from __future__ import annotations

import uuid

import pytest

import storage.recordings
from bot.schema import DiarizeRequest, Job, JobStatus
from storage.models import AuditAction, AuditEvent, RecordingStatus
from storage.recordings import IdentifyRefused, get_recording, requeue_identify
from storage.thread import CHART, get_output, set_relabel
from testbed.fake_slack import BOT_USER_ID
from tests.reliability_support import (  # noqa: F401 — fixtures
    CHANNEL,
    OUTPUT,
    Crash,
    Proc,
    ScriptedEngine,
    World,
    summary_shown,
    world_fixture,
)

DIARIZED = {"diarization": OUTPUT["diarization"], "duration": 3.0}


class DiarizingEngine(ScriptedEngine):
    """The scripted engine with diarize-only jobs (their output has no voiceprints)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.diarize_jobs: set[str] = set()

    async def submit_diarize(self, request: DiarizeRequest) -> Job:
        job_id = uuid.uuid4().hex
        self.jobs[job_id] = ("ok", 0)
        self.diarize_jobs.add(job_id)
        return Job(job_id=job_id, status=JobStatus.running, progress=0.0)

    async def get_job(self, job_id: str) -> Job:
        job = await super().get_job(job_id)
        if job_id in self.diarize_jobs and job.status is JobStatus.succeeded:
            return Job(job_id=job_id, status=JobStatus.succeeded, output=DIARIZED, progress=1.0)
        return job


async def posted_without_enrollment(world: World):
    """A recording shared while nobody in the channel had enrolled, summarised from a diarize-only job."""
    world.fake.members[CHANNEL] = ["U2", BOT_USER_ID]
    event, rec = await world.share()
    await Proc(world, engine=DiarizingEngine()).claim_and_run()
    rec = await get_recording(world.db, rec.id)
    assert rec.state is RecordingStatus.posted and rec.diarize_only, rec.error_message
    [reply] = world.replies(event)
    assert "Speaker 1" in str(reply.blocks) and "`/enroll`" in str(reply.blocks)
    assert len(world.chart_uploads(event)) == 1
    world.fake.members[CHANNEL] = ["U1", "U2", BOT_USER_ID]  # U1 (enrolled) joins
    return event, rec


async def test_an_engine_without_diarize_still_fails_clearly_when_nobody_enrolled(world: World):
    world.fake.members[CHANNEL] = ["U2", BOT_USER_ID]
    event, _rec = await world.share()
    await Proc(world).claim_and_run()
    [reply] = world.replies(event)
    assert reply.text.startswith("Could not identify speakers") and "/enroll" in str(reply.blocks)


async def test_a_rerun_taken_over_after_a_crash_posts_one_summary_and_one_chart(world: World, monkeypatch):
    event, rec = await posted_without_enrollment(world)
    first_chart = (await get_output(world.db, rec.id, CHART)).file_id
    await set_relabel(world.db, rec.id, "SPEAKER_01", "U2", actor_id="U2")  # a claim on the old result
    await requeue_identify(world.db, rec.id, actor_id="U2")
    with pytest.raises(IdentifyRefused):  # a second press while it is queued makes no second job
        await requeue_identify(world.db, rec.id, actor_id="U1")

    real = storage.recordings.mark_posted

    async def dies(*args, **kwargs):
        raise Crash("killed after the summary and the chart, before recording it")

    monkeypatch.setattr(storage.recordings, "mark_posted", dies)
    with pytest.raises(Crash):
        await Proc(world, engine=DiarizingEngine()).claim_and_run()
    monkeypatch.setattr(storage.recordings, "mark_posted", real)
    await world.expire_leases()
    await Proc(world, engine=DiarizingEngine()).claim_and_run()

    done = await get_recording(world.db, rec.id)
    assert done.state is RecordingStatus.posted and not done.diarize_only
    assert done.relabels is None and done.posted_ts == rec.posted_ts == done.reply_ts
    assert done.finished_at == rec.finished_at  # identifying again never extends retention
    [reply] = world.replies(event)
    assert summary_shown(reply) and "claimed by" not in str(reply.blocks)
    assert len(world.chart_uploads(event)) == 2  # the first run's and the re-run's, never a third
    assert first_chart not in world.fake.files and (await get_output(world.db, rec.id, CHART)).file_id in world.fake.files
    async with world.db.session() as s:
        from sqlmodel import select

        actions = (await s.exec(select(AuditEvent.action, AuditEvent.actor_id)
                                .where(AuditEvent.target_id == str(rec.id)))).all()
    assert (AuditAction.reidentify, "U2") in [(AuditAction(a), u) for a, u in actions]


async def test_a_failed_rerun_keeps_the_earlier_summary_with_a_note_and_may_be_retried(world: World):
    event, rec = await posted_without_enrollment(world)
    await requeue_identify(world.db, rec.id, actor_id="U2")
    del world.fake.files[rec.file_id]  # deleted from Slack after the press: the job cannot download it
    await Proc(world, engine=DiarizingEngine()).claim_and_run()
    done = await get_recording(world.db, rec.id)
    assert done.state is RecordingStatus.failed and done.error_code == "file_gone"
    assert done.notified_at is not None and done.finished_at == rec.finished_at and done.result == rec.result
    [reply] = world.replies(event)
    blocks = str(reply.blocks)
    assert "Speaker 1" in blocks and "Identify again* did not work" in blocks and "no longer in Slack" in blocks
    assert not reply.text.startswith("Could not identify")
    assert (await requeue_identify(world.db, rec.id, actor_id="U2")).state is RecordingStatus.queued
