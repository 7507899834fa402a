"""Durable enrollments: a submitted `/enroll` is a job in the database, so a crash or restart mid-enrollment
is taken over by another process and still ends with exactly one answer; `/enroll delete` wins over a queued
and a running enrollment job; failed attempts back off before the next. Both databases, the real listener
(signed requests), the real job code and the fake Slack Web API; each "process" has its own engine, owner name
and services, like tests/reliability_support.py."""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from bot.errors import EngineError
from bot.schema import Job, VoiceprintRequest
from storage.database import Database
from storage.enrollments import claim_enrollment, enrollment_jobs, requeue_expired_enrollments
from storage.leases import retry_delay
from storage.models import EnrollmentStatus, utcnow
from storage.voiceprints import get_voiceprint
from testbed.fake_slack import TEAM_ID, BotUnderTest, FakeSlack, bot_settings
from tests.fake_engine import FakeEngine
from tests.reliability_support import (  # noqa: F401 — fixtures
    Crash,
    ScriptedEngine,
    World,
    world_fixture,
)
from tests.reliability_support import Proc as RecordingProc
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import dms, submit_enrollment

USER = "UDURABLE"
CLIP = b"RIFF the person's own voice, durable"
_names = itertools.count(1)


class ProcEngine(FakeEngine):
    """A process's engine: `script` gives the next voiceprint jobs' fates: "ok", "crash" (the process dies
    while the engine works), "down" (a transient engine outage)."""

    def __init__(self, script: list[str] | None = None):
        super().__init__()
        self.script = list(script or [])
        self.made = 0

    async def submit_voiceprint(self, request: VoiceprintRequest) -> Job:
        fate = self.script.pop(0) if self.script else "ok"
        if fate == "crash":
            raise Crash("the process died while the engine worked")
        if fate == "down":
            raise EngineError("The engine is unreachable.", code="engine_unavailable", transient=True)
        self.made += 1
        return await super().submit_voiceprint(request)


@dataclass
class Enrolling:
    fake: FakeSlack
    db: Database
    bot: BotUnderTest  # the web process: listener only, no job runner (its jobs wait in the queue)

    def settings(self, **overrides):
        return bot_settings(self.fake, self.db.url.render_as_string(hide_password=False), **overrides)

    async def submit(self) -> None:
        answer = await submit_enrollment(self.bot, self.fake, USER, CLIP)
        assert answer.get("response_action") == "update", answer

    def answers(self) -> list[str]:
        """The DMs the person received (a call Slack refused is not one)."""
        return [c.params.get("text", "") for c in self.fake.calls_to("chat.postMessage")
                if c.params.get("channel") == USER and c.done]

    def modal_updates(self) -> list:
        return [c for c in self.fake.calls_to("views.update") if c.params.get("view_id") == "VSUBMIT"]


class Proc:
    """One worker process: its own engine, services and owner name, the real enrollment job code."""

    def __init__(self, world: Enrolling, engine: ProcEngine | None = None, **settings):
        from bot.jobs.enrollment_job import Enrollments
        from bot.services.context import Services

        self.world = world
        self.engine = engine or ProcEngine()
        self.services = Services(settings=world.settings(**settings), db=world.db, engine=self.engine)
        self.owner = f"enroll-proc-{next(_names)}"
        self.enrollments = Enrollments(self.services, self.owner, shared_cpu())

    async def claim(self):
        return await claim_enrollment(self.world.db, self.owner, self.services.settings.job_lease_seconds)

    async def run(self, job) -> None:
        await self.enrollments.start(job)

    async def claim_and_run(self):
        job = await self.claim()
        assert job is not None, "nothing to claim"
        await self.run(job)
        return job


@pytest.fixture(name="enrolling")
async def enrolling_fixture(db: Database) -> AsyncIterator[Enrolling]:
    fake = FakeSlack()
    await fake.start()
    world = Enrolling(fake, db, None)
    world.bot = await BotUnderTest(fake, world.settings(), db, FakeEngine(), run_jobs=False, cpu=shared_cpu()).start()
    yield world
    await world.bot.stop()
    await fake.close()


async def expire_leases(world: Enrolling) -> int:
    """What the other workers' scheduler does once a crashed worker's lease has run out."""
    return await requeue_expired_enrollments(world.db, now=utcnow() + timedelta(hours=1))


async def assert_enrolled_once(world: Enrolling) -> None:
    [answer] = world.answers()
    assert "voiceprint is saved" in answer, answer
    assert len(world.modal_updates()) == 1
    assert await get_voiceprint(world.db, TEAM_ID, USER) is not None
    assert await enrollment_jobs(world.db) == [], "a finished enrollment job leaves no row"
    assert await Proc(world).claim() is None


async def test_the_submission_stores_a_job_without_biometric_data(enrolling: Enrolling):
    world = enrolling
    await world.submit()
    [job] = await enrollment_jobs(world.db)
    assert job.status == EnrollmentStatus.queued and job.attempts == 0 and job.lease_owner is None
    assert job.user_id == USER and job.view_id == "VSUBMIT" and job.generation == 0
    assert job.file_id.startswith("F")
    assert world.answers() == [], "nothing answers before a worker ran the job"
    proc = Proc(world)
    await proc.claim_and_run()
    await assert_enrolled_once(world)
    vp = await get_voiceprint(world.db, TEAM_ID, USER)
    assert vp.consent_at == job.consent_at, "the consent time is the submission's"


async def test_a_crash_while_the_engine_works_is_taken_over_with_one_answer(enrolling: Enrolling):
    world = enrolling
    await world.submit()
    first = Proc(world, ProcEngine(["crash"]))
    with pytest.raises(Crash):
        await first.claim_and_run()
    [job] = await enrollment_jobs(world.db)
    assert job.status == EnrollmentStatus.running and job.lease_owner == first.owner
    assert await Proc(world).claim() is None, "the lease still holds"
    assert await expire_leases(world) == 1
    await Proc(world).claim_and_run()
    await assert_enrolled_once(world)


async def test_a_crash_right_after_claiming_is_taken_over_with_one_answer(enrolling: Enrolling):
    world = enrolling
    await world.submit()
    assert await Proc(world).claim() is not None  # the process dies before running it
    await expire_leases(world)
    await Proc(world).claim_and_run()
    await assert_enrolled_once(world)


async def test_crashes_using_up_the_attempts_still_end_with_one_answer(enrolling: Enrolling):
    world = enrolling
    await world.submit()
    for _ in range(2):
        with pytest.raises(Crash):
            await Proc(world, ProcEngine(["crash"]), job_max_attempts=2).claim_and_run()
        await expire_leases(world)
    await Proc(world, job_max_attempts=2).claim_and_run()
    [answer] = world.answers()
    assert "not enrolled" in answer and "ref " in answer and "http" not in answer, answer
    assert await get_voiceprint(world.db, TEAM_ID, USER) is None
    assert await enrollment_jobs(world.db) == []


async def test_engine_failures_using_up_the_attempts_end_with_one_answer(enrolling: Enrolling):
    world = enrolling
    await world.submit()
    proc = Proc(world, ProcEngine(["down", "down"]), job_max_attempts=2)
    await proc.claim_and_run()
    assert world.answers() == [], "a transient failure is retried, not answered"
    await proc.claim_and_run()
    [answer] = world.answers()
    assert "not enrolled" in answer and "ref " in answer, answer
    assert await enrollment_jobs(world.db) == []


async def test_an_answer_slack_refused_is_sent_again_without_making_the_voiceprint_again(enrolling: Enrolling):
    world = enrolling
    await world.submit()
    world.fake.server_errors["chat.postMessage"] = 1
    proc = Proc(world)
    await proc.claim_and_run()
    [job] = await enrollment_jobs(world.db)
    assert job.status == EnrollmentStatus.queued and "voiceprint is saved" in job.answer
    await proc.claim_and_run()
    await assert_enrolled_once(world)
    assert proc.engine.made == 1


async def test_delete_wins_over_a_queued_enrollment_job(enrolling: Enrolling):
    world = enrolling
    await world.submit()
    reply = await (await world.bot.command(USER, "delete")).text()
    assert "cancelled by this delete" in reply, reply
    assert await enrollment_jobs(world.db) == []
    assert await Proc(world).claim() is None
    assert world.answers() == [], "the delete's reply is the one answer"
    assert await get_voiceprint(world.db, TEAM_ID, USER) is None


async def test_delete_wins_over_an_enrollment_job_running_in_another_process(enrolling: Enrolling):
    world = enrolling
    await world.submit()
    proc = Proc(world)
    proc.engine.gate = asyncio.Event()
    job = await proc.claim()
    running = proc.enrollments.start(job)
    await asyncio.wait_for(proc.engine.voiceprint_started.wait(), 30)
    reply = await (await world.bot.command(USER, "delete")).text()
    assert "no voiceprint to delete" in reply, reply
    proc.engine.gate.set()
    await running
    [answer] = world.answers()
    assert "not enrolled" in answer and "cancelled" in answer, answer
    assert await get_voiceprint(world.db, TEAM_ID, USER) is None
    assert await enrollment_jobs(world.db) == []


async def test_delete_wins_over_an_enrollment_job_taken_over_after_a_crash(enrolling: Enrolling):
    world = enrolling
    await world.submit()
    with pytest.raises(Crash):
        await Proc(world, ProcEngine(["crash"])).claim_and_run()
    reply = await (await world.bot.command(USER, "delete")).text()
    assert "no voiceprint to delete" in reply, reply  # the job was running (in a dead process)
    await expire_leases(world)
    await Proc(world).claim_and_run()
    [answer] = world.answers()
    assert "cancelled" in answer, answer
    assert await get_voiceprint(world.db, TEAM_ID, USER) is None


async def test_delete_cancels_a_job_running_in_the_deleting_process_without_a_second_answer(db: Database):
    fake = FakeSlack()
    await fake.start()
    engine = FakeEngine()
    engine.gate = asyncio.Event()
    # A lease far longer than the test: under load a 5 s lease could expire while the job waits at the gate,
    # and the runner would requeue it before the delete (nothing here is about leases).
    settings = bot_settings(fake, db.url.render_as_string(hide_password=False), job_lease_seconds=300)
    bot = await BotUnderTest(fake, settings, db, engine, cpu=shared_cpu()).start()
    try:
        answer = await submit_enrollment(bot, fake, USER, CLIP)
        assert answer.get("response_action") == "update", answer
        await asyncio.wait_for(engine.voiceprint_started.wait(), 30)
        [job] = await enrollment_jobs(db)
        assert job.status == EnrollmentStatus.running, "the submitting process's runner holds it at once"
        reply = await (await bot.command(USER, "delete")).text()
        assert "cancelled by this delete" in reply, reply
        engine.gate.set()
        await bot.runner.enrollments.active.wait()  # the cancelled job has finished its cancellation
        assert await enrollment_jobs(db) == []
        assert dms(fake, USER) == []
        assert await get_voiceprint(db, TEAM_ID, USER) is None
    finally:
        engine.gate.set()
        await bot.stop()
        await fake.close()


# -- retry backoff ------------------------------------------------------------------------------------
def test_retry_delay_grows_fourfold_and_is_capped():
    assert [retry_delay(n, 15, 900) for n in (1, 2, 3, 4, 5)] == [15, 60, 240, 900, 900]
    assert retry_delay(1, 0, 900) == 0 and retry_delay(0, 15, 900) == 0
    assert retry_delay(10_000, 15, 900) == 900


def _waits(row, seconds: float) -> bool:
    """`not_before` is `seconds` after now (within the test's own run time)."""
    ahead = (row.not_before - utcnow()).total_seconds()
    return seconds - 10 <= ahead <= seconds


async def test_a_failed_enrollment_attempt_waits_before_the_next(enrolling: Enrolling):
    world = enrolling
    await world.submit()
    proc = Proc(world, ProcEngine(["down", "down"]), job_retry_base_seconds=15, job_retry_max_seconds=900)
    await proc.claim_and_run()
    [job] = await enrollment_jobs(world.db)
    assert job.status == EnrollmentStatus.queued and job.attempts == 1 and _waits(job, 15), job.not_before
    assert await proc.claim() is None, "not claimable during the backoff"
    await _due_now(world.db, "enrollmentjob")
    await proc.claim_and_run()
    [job] = await enrollment_jobs(world.db)
    assert job.attempts == 2 and _waits(job, 60), job.not_before


async def test_a_failed_recording_attempt_waits_before_the_next(world: World):
    from storage.models import RecordingStatus
    from storage.recordings import get_recording

    _, rec = await world.share()
    proc = RecordingProc(world, ScriptedEngine(script=["fail", "fail"]), job_retry_base_seconds=15)
    await proc.claim_and_run()
    rec = await get_recording(world.db, rec.id)
    assert rec.state is RecordingStatus.queued and rec.attempts == 1 and _waits(rec, 15), rec.not_before
    assert await proc.claim() is None, "not claimable during the backoff"
    await _due_now(world.db, "recording")
    await proc.claim_and_run()
    rec = await get_recording(world.db, rec.id)
    assert rec.attempts == 2 and _waits(rec, 60), rec.not_before


async def _due_now(db: Database, table: str) -> None:
    """Lets the backoff pass (as if the time had come)."""
    from sqlalchemy import text

    async with db.session() as s:
        await s.exec(text(f"UPDATE {table} SET not_before = NULL"))
        await s.commit()
