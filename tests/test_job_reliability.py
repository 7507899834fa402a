"""Jobs under faults, in process on both databases: leases kept for the whole job and lost cleanly, a new engine
job per retry, deadlines, every end shown, leases released on stop and after a local crash, the fair queue,
the CPU pool healing, and Slack answering 429/500 without a duplicate message."""
from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

import storage.recordings
from bot.jobs.scheduler import dead_local_owners
from storage.models import RecordingStatus, utcnow
from storage.recordings import claim_next, enqueue_recording, get_recording, requeue_expired
from testbed.fake_slack import TEAM_ID
from tests.reliability_support import (  # noqa: F401 — fixtures
    CHANNEL,
    Crash,
    Proc,
    ScriptedEngine,
    World,
    failure_shown,
    summary_shown,
    world_fixture,
)


async def status_of(world: World, rec_id: int) -> RecordingStatus:
    return (await get_recording(world.db, rec_id)).state


# -- leases ------------------------------------------------------------------------------------------

async def test_the_lease_is_renewed_through_a_slow_step(world: World):
    """An 11 s engine upload under a 5 s lease, while another worker's scheduler requeues expired leases (a
    3 s lease was renewed every second, and a loaded CI machine once let one renewal slip past it)."""
    event, rec = await world.share()
    proc = Proc(world, job_lease_seconds=5)
    proc.engine.upload_delay = 11
    job = asyncio.create_task(proc.claim_and_run())
    while not job.done():
        await requeue_expired(world.db, 3)
        await asyncio.sleep(0.1)
    await job
    done = await get_recording(world.db, rec.id)
    assert done.state is RecordingStatus.posted and done.attempts == 1
    [reply] = world.replies(event)
    assert summary_shown(reply)


async def test_a_lost_lease_stops_the_job_at_once_and_quietly(world: World):
    event, rec = await world.share()
    first = Proc(world, job_lease_seconds=1)
    first.engine.upload_delay = 10
    job = asyncio.create_task(first.claim_and_run())
    await asyncio.wait_for(first.engine.uploading.wait(), 30)  # the first worker holds it, inside the slow upload
    await world.expire_leases()  # the first worker looked dead to the others
    second = Proc(world)
    assert (await second.claim()).id == rec.id
    started = time.monotonic()
    await asyncio.wait_for(job, 8)  # cancelled by its lease keeper, not by the 10 s upload finishing
    assert time.monotonic() - started < 5
    assert first.engine.submitted == []
    now = await get_recording(world.db, rec.id)
    assert now.lease_owner == second.owner and now.state is RecordingStatus.running
    [progress] = world.replies(event)
    assert progress.text.startswith("Identifying")


async def test_stop_releases_running_recordings_at_once(world: World):
    _event, rec = await world.share()
    proc = Proc(world, engine=ScriptedEngine(script=["hang"]))
    runner = proc.runner(owner=proc.owner, capacity=1)
    await runner.start()
    try:
        deadline = time.monotonic() + 60
        while not (await get_recording(world.db, rec.id)).engine_job_id:
            assert time.monotonic() < deadline, "the runner never reached the engine"
            await asyncio.sleep(0.05)
    finally:
        await runner.stop()
    released = await get_recording(world.db, rec.id)
    assert released.state is RecordingStatus.queued and released.lease_owner is None
    assert released.engine_job_id, "kept, so the next worker resumes the engine job if it is still known"
    assert (await claim_next(world.db, "next", 30)).id == rec.id


async def test_a_worker_starting_ends_the_leases_of_a_dead_process_on_this_host(world: World):
    _event, rec = await world.share()
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()
    host = socket.gethostname()
    dead, alive = f"{host}:{gone.pid}:abc123", f"{host}:{os.getpid()}:def456"
    assert dead_local_owners([dead, alive, f"other-host:{gone.pid}:x"], host) == [dead]
    await claim_next(world.db, dead, 600)
    runner = Proc(world).runner(capacity=1)
    await runner.reap_dead_local_owners()
    assert await requeue_expired(world.db, 3) == 1
    assert (await get_recording(world.db, rec.id)).state is RecordingStatus.queued


# -- engine retries and deadlines ---------------------------------------------------------------------

async def test_a_failed_engine_job_is_retried_as_a_new_engine_job(world: World):
    event, rec = await world.share()
    proc = Proc(world, engine=ScriptedEngine(script=["fail", "ok"]))
    await proc.claim_and_run()
    assert await status_of(world, rec.id) is RecordingStatus.queued
    await proc.claim_and_run()
    assert await status_of(world, rec.id) is RecordingStatus.posted
    assert len(set(proc.engine.submitted)) == 2
    [reply] = world.replies(event)
    assert summary_shown(reply)


async def test_a_hung_engine_job_hits_its_deadline_and_is_retried(world: World, monkeypatch):
    event, rec = await world.share()
    proc = Proc(world, engine=ScriptedEngine(script=["hang", "ok"]), job_deadline_base_seconds=0.5,
                job_deadline_factor=0.1)
    real_heartbeat, deadlines = storage.recordings.heartbeat, []

    async def heartbeat(*args, engine_deadline_at=None, **kwargs):
        if engine_deadline_at is not None:
            deadlines.append((engine_deadline_at - utcnow()).total_seconds())
        return await real_heartbeat(*args, engine_deadline_at=engine_deadline_at, **kwargs)

    monkeypatch.setattr(storage.recordings, "heartbeat", heartbeat)
    await asyncio.wait_for(proc.claim_and_run(), 10)
    # 0.5 s + 0.1 × the 3 s the WAV header states, counted from the submission
    assert deadlines[0] == pytest.approx(0.8, abs=0.15)
    timed_out = await get_recording(world.db, rec.id)
    assert timed_out.state is RecordingStatus.queued and timed_out.error_code == "timeout"
    assert timed_out.engine_job_id is None and timed_out.engine_deadline_at is None
    await asyncio.wait_for(proc.claim_and_run(), 10)
    assert await status_of(world, rec.id) is RecordingStatus.posted
    assert len(proc.engine.submitted) == 2
    assert summary_shown(world.replies(event)[0])


async def test_deadline_is_derived_from_the_media_duration(world: World):
    job = Proc(world, job_deadline_base_seconds=300, job_deadline_factor=2).recording_job
    now = utcnow()
    assert (job.deadline_for(60) - now).total_seconds() == pytest.approx(420, abs=2)
    unknown = (job.deadline_for(None) - now).total_seconds()
    assert unknown == pytest.approx(300 + 2 * 4 * 3600, abs=2), "unknown length: the longest allowed"


# -- every end is shown -----------------------------------------------------------------------------

async def test_attempts_used_up_by_lease_expiry_end_with_a_failure_message(world: World, monkeypatch):
    event, rec = await world.share()
    first = Proc(world, job_max_attempts=1)

    async def dies(job_id):
        raise Crash("kill -9")

    monkeypatch.setattr(first.engine, "get_job", dies)
    with pytest.raises(Crash):
        await first.claim_and_run()
    await world.expire_leases(max_attempts=1)
    assert await status_of(world, rec.id) is RecordingStatus.failed
    await Proc(world, job_max_attempts=1).claim_and_run()
    [reply] = world.replies(event)
    assert failure_shown(reply) and "stopped responding" in reply.text
    assert (await get_recording(world.db, rec.id)).notified_at is not None
    assert await Proc(world).claim() is None


async def test_a_final_failure_is_shown_once_even_when_the_worker_dies_while_showing_it(world: World, monkeypatch):
    world.fake.members[CHANNEL] = ["U2"]  # nobody enrolled in the channel: a final, non-transient failure
    event, rec = await world.share()
    real = storage.recordings.mark_notified
    calls: list[int] = []

    async def dies_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise Crash("killed after showing, before recording it")
        return await real(*args, **kwargs)

    monkeypatch.setattr(storage.recordings, "mark_notified", dies_once)
    with pytest.raises(Crash):
        await Proc(world).claim_and_run()
    [reply] = world.replies(event)
    assert failure_shown(reply) and "/enroll" in str(reply.blocks)
    await world.expire_leases()
    await Proc(world).claim_and_run()
    [reply] = world.replies(event)
    assert failure_shown(reply)
    done = await get_recording(world.db, rec.id)
    assert done.state is RecordingStatus.failed and done.notified_at is not None and done.lease_owner is None
    assert await Proc(world).claim() is None


# -- the queue is fair ------------------------------------------------------------------------------

async def test_one_workspace_backlog_does_not_starve_another(world: World):
    async def enqueue(team: str, n: int) -> list[int]:
        ids = []
        for i in range(n):
            rec, _ = await enqueue_recording(world.db, team_id=team, channel_id=CHANNEL, file_id=f"F{team}{i}",
                                             file_name="a.wav", uploader_id="U0",
                                             message_ts="1.1", engine="local")
            ids.append(rec.id)
        return ids

    big = await enqueue("TBIG", 4)
    small = await enqueue("TSMALL", 2)
    order = [(await claim_next(world.db, f"w{i}", 60)).id for i in range(4)]
    assert order == [big[0], small[0], big[1], small[1]]


# -- the CPU pool heals -----------------------------------------------------------------------------

async def test_the_cpu_pool_is_rebuilt_after_its_worker_dies():
    from concurrent.futures.process import BrokenProcessPool

    from bot.pools import CpuPool

    cpu = CpuPool()
    try:
        with pytest.raises(BrokenProcessPool):
            await cpu.run(os._exit, 3)  # the OOM killer, twice
        assert await cpu.run(pow, 2, 5) == 32
    finally:
        await cpu.close()


# -- Slack answering 429 and 500 --------------------------------------------------------------------

async def test_a_lost_answer_to_chat_post_message_does_not_post_twice(world: World):
    world.fake.lost_answers["chat.postMessage"] = 1
    event, rec = await world.share()
    [progress] = world.replies(event)
    assert progress.ts == rec.reply_ts
    await Proc(world).claim_and_run()
    [reply] = world.replies(event)
    assert summary_shown(reply)


async def test_random_429_and_500_from_slack_end_with_one_reply_per_recording(world: World):
    from slack_sdk.errors import SlackApiError

    world.fake.retry_after = 0
    world.fake.chaos = 0.15
    for i in range(4):
        try:
            await world.share(f"chaos-{i}.wav")
        except SlackApiError:  # Slack would retry the event; the recording is queued already
            pass
    for _ in range(12):
        proc = Proc(world)
        while (rec := await proc.claim()) is not None:
            await proc.run(rec)
        await world.expire_leases()
    world.fake.chaos = 0
    rows = [await storage.recordings.find_recording(world.db, TEAM_ID, f.id) for f in world.fake.files.values()
            if f.name.startswith("chaos-")]
    assert len(rows) == 4
    for r in rows:
        assert r.state in (RecordingStatus.posted, RecordingStatus.failed), r.status
        replies = world.replies({"ts": r.message_ts})
        assert len(replies) == 1, [m.text for m in replies]
        assert summary_shown(replies[0]) if r.state is RecordingStatus.posted else failure_shown(replies[0])
        assert len(world.chart_uploads({"ts": r.message_ts})) <= 1


# -- PostgreSQL restarted mid-job -------------------------------------------------------------------

@pytest.fixture(scope="module")
def own_postgres():
    """A PostgreSQL server of this module's own, so restarting it disturbs no other test; durable settings,
    since an immediate stop of the fast test server (synchronous_commit off) loses recent commits."""
    from testbed.postgres import PostgresServer, PostgresUnavailable
    from tests.ci import skip_or_fail

    try:
        server = PostgresServer(fast=False).start()
    except PostgresUnavailable as exc:
        skip_or_fail(f"PostgreSQL tests skipped: {exc}")
    yield server
    server.stop()


@pytest.mark.postgres
async def test_postgres_restarted_while_the_engine_works(own_postgres):
    from storage.database import Database
    from storage.migrate import upgrade
    from testbed.fake_slack import BOT_USER_ID, FakeSlack

    url = own_postgres.create_database("restart")
    await upgrade(url)
    db = Database(url)
    fake = FakeSlack()
    await fake.start()
    try:
        from storage.voiceprints import upsert_voiceprint

        fake.members[CHANNEL] = ["U1", BOT_USER_ID]
        await upsert_voiceprint(db, team_id=TEAM_ID, user_id="U1", engine="local", model_id="m", voiceprint="vp",
                                consent_at=utcnow(), clip_duration=10.0)
        world = World(fake, db, url)
        event, rec = await world.share()
        proc = Proc(world, engine=ScriptedEngine(polls=600), job_lease_seconds=20)
        job = asyncio.create_task(proc.claim_and_run())
        while not (await get_recording(db, rec.id)).engine_job_id:
            await asyncio.sleep(0.02)
        await asyncio.to_thread(own_postgres.restart, 1.0)
        await asyncio.wait_for(job, 60)
        done = await get_recording(db, rec.id)
        assert done.state is RecordingStatus.posted and done.attempts == 1, (done.status, done.error_code)
        [reply] = world.replies(event)
        assert summary_shown(reply) and len(world.chart_uploads(event)) == 1
    finally:
        await db.dispose()
        await fake.close()


async def test_the_first_stored_reply_wins_and_the_late_one_is_deleted(world: World):
    """The listener's progress reply and a fast worker's failure raced: one bot message stays in the thread."""
    from bot.slack_api.client import make_client
    from bot.slack_api.replies import keep_stored
    from bot.summary.status import render_progress
    from storage.thread import set_reply_ts

    world.fake.members[CHANNEL] = ["U2"]  # nobody enrolled: the worker fails at once
    f = world.fake.add_file("race.wav", "audio/wav", b"RIFF")
    rec, _ = await enqueue_recording(world.db, team_id=TEAM_ID, channel_id=CHANNEL, file_id=f.id,
                                     file_name=f.name, uploader_id="U0",
                                     message_ts="1700000000.000100", engine="local")
    await Proc(world).claim_and_run()  # the worker was first: it posted the failure and stored its ts
    [failure] = world.replies({"ts": "1700000000.000100"})
    assert failure_shown(failure) and (await get_recording(world.db, rec.id)).reply_ts == failure.ts
    client = make_client(world.settings(), world.fake.token)
    late = await client.chat_postMessage(channel=CHANNEL, thread_ts="1700000000.000100",
                                         text=render_progress("race.wav").text)
    stored = await set_reply_ts(world.db, rec.id, late["ts"])
    assert stored == failure.ts
    await keep_stored(client, CHANNEL, late["ts"], stored, None)
    assert [m.ts for m in world.replies({"ts": "1700000000.000100"})] == [failure.ts]
