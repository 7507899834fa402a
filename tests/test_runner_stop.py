"""Stopping the job runner cleanly: a claim pass queued by `kick()` just before `stop()` claims nothing that
`stop` then leaves running (and releases under it), every job and its lease keeper have ended when `stop`
returns, and a job cancelled while its database write waits for SQLite's write lock leaves no transaction
open behind it. Real SQLite file, fake Slack Web API on 127.0.0.1."""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import event

from bot.jobs.scheduler import JobRunner
from bot.pools import CpuPool, TaskSet
from bot.runtime import recognizer
from bot.services.context import Services
from storage.database import Database
from testbed.fake_slack import TEAM_ID, FakeSlack, bot_settings
from tests.fake_engine import FakeEngine


@pytest.fixture
async def fake():
    slack = FakeSlack()
    await slack.start()
    yield slack
    for gate in slack.gates.values():
        gate.open()
    await slack.close()


async def queued(db: Database, *file_ids: str) -> list[int]:
    from storage.recordings import enqueue_recording

    ids = []
    for file_id in file_ids:
        rec, _ = await enqueue_recording(db, team_id=TEAM_ID, channel_id="C1", file_id=file_id, file_name="a.wav",
                                         uploader_id="U1", message_ts="1.2", engine="fake")
        ids.append(rec.id)
    return ids


def database_file(db: Database) -> Path:
    return Path(db.url.database)


def can_write(path: Path, timeout: float) -> bool:
    """Another connection (as another process would) takes SQLite's write lock within `timeout` seconds."""
    con = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("COMMIT")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        con.close()


async def test_a_claim_pass_kicked_just_before_stop_leaves_nothing_running(sqlite_db: Database, fake: FakeSlack):
    from storage.recordings import get_recording

    fake.gate("files.info")  # a job that starts would hang in its first Slack call
    services = Services(settings=bot_settings(fake, str(sqlite_db.url)), db=sqlite_db, engine=FakeEngine())
    background = TaskSet()
    runner = JobRunner(services, cpu=CpuPool(), speech=recognizer(services.settings), background=background,
                       capacity=2)
    ids = await queued(sqlite_db, "F1", "F2")

    runner.kick()  # queued, not yet run: it runs while `stop` waits
    await runner.stop()
    await background.wait()  # whatever the process still had queued has run its course

    assert [t.get_name() for t in runner.active if not t.done()] == [], "a job was left running after stop"
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("lease ")] == []
    for rec_id in ids:
        rec = await get_recording(sqlite_db, rec_id)
        assert rec.lease_owner is None and rec.state.value == "queued", (rec.status, rec.lease_owner)
    assert not fake.gates["files.info"].reached.is_set(), "a job started after stop began"


async def test_stop_ends_the_jobs_it_holds_and_their_lease_keepers(sqlite_db: Database, fake: FakeSlack):
    from storage.recordings import get_recording

    gate = fake.gate("files.info")
    services = Services(settings=bot_settings(fake, str(sqlite_db.url), job_lease_seconds=3), db=sqlite_db,
                        engine=FakeEngine())
    runner = JobRunner(services, cpu=CpuPool(), speech=recognizer(services.settings), background=TaskSet(),
                       capacity=2)
    ids = await queued(sqlite_db, "F1", "F2")
    await runner.start()
    await fake.wait_for(lambda: len(runner.active) == 2 and gate.reached.is_set(), what="both jobs running")

    await runner.stop()

    assert all(t.done() for t in runner.active)
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("lease ")] == []
    for rec_id in ids:
        rec = await get_recording(sqlite_db, rec_id)
        assert rec.lease_owner is None and rec.state.value == "queued", (rec.status, rec.lease_owner)


async def test_a_write_cancelled_while_it_waits_for_the_lock_leaves_the_database_writable(sqlite_db: Database):
    """A heartbeat waits for the write lock another process holds; stopping cancels the job right then. Before
    the fix the cancelled statement's connection was invalidated still holding the lock, and every writer
    (the release at stop included) got "database is locked"."""
    from storage.recordings import claim_next, heartbeat

    [rec_id] = await queued(sqlite_db, "F1")
    assert (await claim_next(sqlite_db, "worker", 30)).id == rec_id
    path = database_file(sqlite_db)
    sent = asyncio.Event()

    @event.listens_for(sqlite_db.engine.sync_engine, "before_cursor_execute")
    def _update_sent(conn, cursor, statement, *args) -> None:
        if statement.startswith("UPDATE"):
            sent.set()

    other = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    try:
        beat = asyncio.create_task(heartbeat(sqlite_db, rec_id, "worker", 30, progress=0.5))
        await sent.wait()
        await asyncio.sleep(0.1)  # the statement is now waiting in SQLite's busy handler
        beat.cancel()
    finally:
        other.execute("COMMIT")
        other.close()
    await asyncio.gather(beat, return_exceptions=True)
    assert beat.cancelled()
    assert await asyncio.to_thread(can_write, path, 5.0), "the cancelled write left SQLite locked"


async def test_an_enrollment_submitted_while_the_runner_stops_is_queued_for_another_worker(sqlite_db: Database,
                                                                                          fake: FakeSlack):
    """A listener still running after its process's runner stopped (Socket Mode may not wait for it) hands the
    enrollment to no one here: it is queued unleased, not leased to a runner that will never run it."""
    from sqlmodel import select

    from bot.services.enrollment import submit_enrollment
    from storage.models import EnrollmentJob

    services = Services(settings=bot_settings(fake, str(sqlite_db.url)), db=sqlite_db, engine=FakeEngine())
    runner = JobRunner(services, cpu=CpuPool(), speech=recognizer(services.settings), background=TaskSet())
    await runner.start()
    assert runner.taking_work
    await runner.stop()
    assert not runner.taking_work

    await submit_enrollment(services, runner, TEAM_ID, "U1", "F1", view_id=None)
    async with sqlite_db.session() as s:
        [job] = (await s.exec(select(EnrollmentJob))).all()
    assert job.status.value == "queued" and job.lease_owner is None, (job.status, job.lease_owner)
    assert len(runner.enrollments.active) == 0
