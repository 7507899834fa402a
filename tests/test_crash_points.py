"""Exactly-once at every crash point: a crash (or a lost lease) between each pair of steps that must not be
repeated still ends with exactly one reply in the thread, showing the summary, and at most one chart.

Each "process" has its own engine, so a takeover after a crash meets an engine that never heard of the
first job and must resubmit it. Both databases, the real pipeline and listener, the fake Slack Web API."""
from __future__ import annotations

import pytest

import bot.jobs.recording_job
import storage.recordings
import storage.thread
from storage.models import RecordingStatus
from storage.recordings import enqueue_recording, get_recording
from testbed.fake_slack import TEAM_ID
from tests.reliability_support import (  # noqa: F401 — fixtures
    CHANNEL,
    Crash,
    Proc,
    World,
    summary_shown,
    wav,
    world_fixture,
)


def crash_at(monkeypatch, target, name: str, *, after_the_call: bool = False) -> None:
    """The first call of `target.name` dies before doing anything, or right after it did its work."""
    real = getattr(target, name)
    done: list[bool] = []

    async def dying(*args, **kwargs):
        if done:
            return await real(*args, **kwargs)
        done.append(True)
        if after_the_call:
            await real(*args, **kwargs)
        raise Crash(name)

    monkeypatch.setattr(target, name, dying)


def before_first_call(monkeypatch, target, name: str, action) -> None:
    """Runs `action()` (another worker taking the recording over) just before the first call of `target.name`."""
    real = getattr(target, name)
    done: list[bool] = []

    async def late(*args, **kwargs):
        if not done:
            done.append(True)
            await action()
        return await real(*args, **kwargs)

    monkeypatch.setattr(target, name, late)


async def assert_one_summary(world: World, event: dict, rec_id: int, *, charts: int = 1) -> None:
    rec = await get_recording(world.db, rec_id)
    assert rec.state is RecordingStatus.posted, (rec.status, rec.error_code, rec.error_message)
    [reply] = world.replies(event)
    assert summary_shown(reply), reply.text
    assert rec.posted_ts == reply.ts == rec.reply_ts
    assert len(world.chart_uploads(event)) == charts
    assert await Proc(world).claim() is None, "nothing is left to do"


async def test_no_crash_baseline(world: World):
    event, rec = await world.share()
    [progress] = world.replies(event)
    assert progress.text.startswith("Identifying speakers")
    proc = Proc(world)
    await proc.claim_and_run()
    await assert_one_summary(world, event, rec.id)
    assert len(proc.engine.submitted) == 1
    assert proc.engine.jobs == {}, "the engine forgets the job once its result is stored"


async def test_progress_reply_posted_but_its_ts_not_stored(world: World, monkeypatch):
    crash_at(monkeypatch, storage.thread, "set_reply_ts")
    with pytest.raises(Crash):
        await world.share()
    monkeypatch.undo()
    [event_ts] = {m.thread_ts for m in world.fake.messages.values()}
    rec = await storage.recordings.find_recording(world.db, TEAM_ID, next(iter(world.fake.files)))
    assert rec.reply_ts is None
    await Proc(world).claim_and_run()
    await assert_one_summary(world, {"ts": event_ts}, rec.id)


async def test_summary_reply_posted_but_its_ts_not_stored(world: World, monkeypatch):
    """No progress reply at all (the listener died before posting): the worker's own post is the one reply."""
    f = world.fake.add_file("late.wav", "audio/wav", wav())
    rec, _ = await enqueue_recording(world.db, team_id=TEAM_ID, channel_id=CHANNEL, file_id=f.id, file_name=f.name,
                                     uploader_id="U0",
                                     message_ts="1700000000.000100", engine="local")
    crash_at(monkeypatch, storage.thread, "set_reply_ts")
    with pytest.raises(Crash):
        await Proc(world).claim_and_run()
    monkeypatch.undo()
    assert len(world.replies({"ts": "1700000000.000100"})) == 1
    await world.expire_leases()
    await Proc(world).claim_and_run()
    await assert_one_summary(world, {"ts": "1700000000.000100"}, rec.id)


@pytest.mark.parametrize("stage", ["downloading", "uploading to the engine"])
async def test_crash_while_downloading_or_uploading(world: World, monkeypatch, stage: str):
    event, rec = await world.share()
    first = Proc(world)
    crash_at(monkeypatch, *((bot.jobs.recording_job, "download") if stage == "downloading" else (first.engine, "upload")))
    with pytest.raises(Crash):
        await first.claim_and_run()
    monkeypatch.undo()
    await world.expire_leases()
    await Proc(world).claim_and_run()
    await assert_one_summary(world, event, rec.id)


async def test_engine_job_submitted_but_its_id_not_stored(world: World, monkeypatch):
    event, rec = await world.share()
    first = Proc(world)
    crash_at(monkeypatch, first.engine, "submit_identify", after_the_call=True)
    with pytest.raises(Crash):
        await first.claim_and_run()
    assert (await get_recording(world.db, rec.id)).engine_job_id is None
    await world.expire_leases()
    second = Proc(world)
    await second.claim_and_run()
    await assert_one_summary(world, event, rec.id)
    assert len(second.engine.submitted) == 1


async def test_crash_while_waiting_and_the_new_engine_never_heard_of_the_job(world: World, monkeypatch):
    event, rec = await world.share()
    first = Proc(world)
    first.engine.polls = 5
    real_get = first.engine.get_job
    reads: list[str] = []

    async def get_job(job_id):
        reads.append(job_id)
        if len(reads) == 2:
            raise Crash("kill -9 while waiting")
        return await real_get(job_id)

    monkeypatch.setattr(first.engine, "get_job", get_job)
    with pytest.raises(Crash):
        await first.claim_and_run()
    assert (await get_recording(world.db, rec.id)).engine_job_id == first.engine.submitted[0]
    await world.expire_leases()
    second = Proc(world)
    await second.claim_and_run()
    await assert_one_summary(world, event, rec.id)
    assert len(second.engine.submitted) == 1 and second.engine.submitted != first.engine.submitted
    assert (await get_recording(world.db, rec.id)).attempts == 2


async def test_summary_updated_but_not_marked_posted(world: World, monkeypatch):
    event, rec = await world.share()
    crash_at(monkeypatch, storage.thread, "start_chart")
    with pytest.raises(Crash):
        await Proc(world).claim_and_run()
    monkeypatch.undo()
    assert summary_shown(world.replies(event)[0]) and not world.chart_uploads(event)
    await world.expire_leases()
    await Proc(world).claim_and_run()
    await assert_one_summary(world, event, rec.id)


async def test_chart_uploaded_but_not_marked_posted(world: World, monkeypatch):
    event, rec = await world.share()
    crash_at(monkeypatch, storage.recordings, "mark_posted")
    with pytest.raises(Crash):
        await Proc(world).claim_and_run()
    monkeypatch.undo()
    assert len(world.chart_uploads(event)) == 1
    await world.expire_leases()
    await Proc(world).claim_and_run()
    await assert_one_summary(world, event, rec.id)


async def test_lease_lost_between_chart_upload_and_marked_posted(world: World, monkeypatch):
    """The first worker stalls after uploading the chart; another takes over and finishes; the first wakes up."""
    event, rec = await world.share()
    second = Proc(world)

    async def takeover():
        await world.expire_leases()
        await second.claim_and_run()

    before_first_call(monkeypatch, storage.recordings, "mark_posted", takeover)
    await Proc(world).claim_and_run()
    await assert_one_summary(world, event, rec.id)


async def test_lease_lost_between_engine_submit_and_its_id_stored(world: World, monkeypatch):
    event, rec = await world.share()
    first, second = Proc(world), Proc(world)

    async def takeover():
        await world.expire_leases()
        await second.claim_and_run()

    real_submit = first.engine.submit_identify

    async def submit(request):
        job = await real_submit(request)
        await takeover()
        return job

    monkeypatch.setattr(first.engine, "submit_identify", submit)
    await first.claim_and_run()
    await assert_one_summary(world, event, rec.id)
    assert len(second.engine.submitted) == 1
