"""The job scheduler (APScheduler `AsyncIOScheduler`): claim queued recordings and enrollment jobs and run
them, post the progress replies of newly stored recordings, requeue expired leases, purge expired results,
refresh rotating OAuth tokens."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import partial

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.jobs.enrollment_job import Enrollments
from bot.jobs.recording_job import RecordingJob
from bot.metrics import LEASE_TAKEOVERS
from bot.pools import CpuPool, TaskSet
from bot.scratch import pid_alive
from bot.services.context import Recognizer, Services

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 3600
REFRESH_EVERY_SECONDS = 1800
MAX_ANNOUNCING = 8  # progress replies being posted at once


def worker_name() -> str:
    """`host:pid:random`: unique per runner, and tells a later process on this host whether its holder lives."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def dead_local_owners(owners: list[str], host: str, alive=pid_alive) -> list[str]:
    """The lease holders that ran on this host in a process that no longer exists (crashed or killed)."""
    dead = []
    for owner in owners:
        owner_host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        if owner_host == host and pid.isdigit() and not alive(int(pid)):
            dead.append(owner)
    return dead


def job_tables() -> list:
    """The tables whose rows workers lease (`storage.leases`)."""
    from storage.models import EnrollmentJob, Recording

    return [Recording, EnrollmentJob]


class JobRunner:
    """Runs up to `capacity` recordings (and as many enrollments) at once in this process, and posts the
    progress replies of recordings the listener stored; several processes may share a database.

    Stopping: `stop` raises a flag that every claim pass checks before each claim, waits for the passes in
    flight (the scheduler's shutdown cancels only their wrappers), then cancels and awaits every job until
    none is left, and only then releases the leases. Database writes run whole (`storage.database.whole`),
    so a cancelled job never leaves a transaction open.

    What the jobs use besides the services is handed in: the CPU pool (a recording's length, charts, a clip's
    length), the speech recognizer (transcripts) and `background`, where a chart redrawn after a correction
    runs on its own (its owner awaits it at shutdown, after `stop`)."""

    def __init__(self, services: Services, *, cpu: CpuPool, speech: Recognizer, background: TaskSet,
                 owner: str | None = None, capacity: int | None = None):
        self.services = services
        self.owner = owner or worker_name()
        self.capacity = capacity or services.settings.engine_workers
        self.recording_job = RecordingJob(services, self.owner, cpu=cpu, speech=speech, background=background)
        self.enrollments = Enrollments(services, self.owner, cpu)
        self.active = TaskSet(on_done=self._recording_done)
        self.announcing = TaskSet()
        self._passes = TaskSet()  # claim passes, purges, token refreshes in flight
        self._stopping = False
        self._lock = asyncio.Lock()
        self._scheduler: AsyncIOScheduler | None = None

    async def start(self) -> None:
        await self.reap_dead_local_owners()
        settings = self.services.settings
        # Every run of the claim job would be logged at INFO, and a pass outlasting the interval (normal
        # under load) as a warning: keep the log for what matters.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        self._scheduler.add_job(self._scheduled, "interval", args=[self.tick], seconds=settings.job_poll_seconds,
                                id="claim", **common)
        self._scheduler.add_job(self._scheduled, "interval", args=[self.purge], seconds=PURGE_EVERY_SECONDS,
                                id="purge", next_run_time=datetime.now(UTC), **common)
        if self.services.oauth:
            # At start too: a process started shortly before a token expires must not wait a whole interval.
            self._scheduler.add_job(self._scheduled, "interval", args=[self.refresh_tokens],
                                    seconds=REFRESH_EVERY_SECONDS, id="refresh", next_run_time=datetime.now(UTC),
                                    **common)
        self._scheduler.start()
        self.kick()

    async def stop(self) -> None:
        """Stop claiming, stop running pipelines and release their recordings at once, so another worker
        resumes them now rather than when the leases expire (a crash still leaves that to the leases)."""
        from storage.enrollments import release_enrollments
        from storage.recordings import release

        self._stopping = True  # no pass starts now, and a pass in flight claims nothing more
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        await self._passes.wait()
        jobs = (self.active, self.enrollments.active, self.announcing)
        while any(jobs):
            await asyncio.gather(*(tasks.cancel() for tasks in jobs))
        try:
            released = await release(self.services.db, self.owner)
            released += await release_enrollments(self.services.db, self.owner)
        except Exception:
            log.exception("releasing this worker's recordings failed; their leases will expire")
        else:
            if released:
                log.info("released %d job(s) for other workers", released)

    def _pass(self, work: Coroutine) -> asyncio.Task:
        """A pass of this runner's own, awaited by `stop` (never cut off mid-transaction)."""
        return self._passes.spawn(work, name=work.__qualname__)

    async def _scheduled(self, work: Callable[[], Coroutine]) -> None:
        """What the scheduler runs: the pass as a task of ours, so shutting the scheduler down cancels only
        this wait and `stop` waits for the pass itself."""
        if self._stopping:
            return
        try:
            await asyncio.shield(self._pass(work()))
        except asyncio.CancelledError:
            if not self._stopping:
                raise

    async def reap_dead_local_owners(self) -> None:
        """A worker starting after a crash on this host ends the dead process's leases now (not at expiry)."""
        from storage.leases import expire_leases, lease_owners

        host = socket.gethostname()
        db = self.services.db
        try:
            dead = dead_local_owners(await lease_owners(db, job_tables(), f"{host}:"), host)
            if dead and await expire_leases(db, job_tables(), dead):
                log.info("took back the jobs of %d stopped worker(s) on this host", len(dead))
        except Exception:
            log.exception("checking for stopped workers failed; their leases will expire")

    @property
    def taking_work(self) -> bool:
        return self._scheduler is not None and not self._stopping

    def start_enrollment(self, job) -> None:
        """Run an enrollment job this runner already holds (claimed at submission, so no claim pass waits)."""
        self.enrollments.start(job)

    def cancel_enrollments(self, team_id: str, user_id: str) -> int:
        return self.enrollments.cancel(team_id, user_id)

    def kick(self) -> None:
        """Look for work now rather than at the next interval."""
        if not self._stopping:
            self._pass(self.tick())

    async def tick(self) -> None:
        from storage.enrollments import claim_enrollment, requeue_expired_enrollments
        from storage.recordings import claim_next, requeue_expired

        if self._lock.locked() or self._stopping:
            return
        async with self._lock:
            settings = self.services.settings
            try:
                LEASE_TAKEOVERS.labels("recording").inc(await requeue_expired(self.services.db,
                                                                             settings.job_max_attempts))
                LEASE_TAKEOVERS.labels("enrollment").inc(await requeue_expired_enrollments(self.services.db))
                while len(self.enrollments.active) < self.capacity and not self._stopping:
                    job = await claim_enrollment(self.services.db, self.owner, settings.job_lease_seconds)
                    if job is None:
                        break
                    self.enrollments.start(job)
                while len(self.active) < self.capacity and not self._stopping:
                    rec = await claim_next(self.services.db, self.owner, settings.job_lease_seconds)
                    if rec is None:
                        break
                    self.active.spawn(self.recording_job.run(rec), name=f"recording {rec.id}")
                await self.announce()
            except Exception:
                log.exception("claiming jobs failed; will retry")

    async def announce(self) -> None:
        """Posts the progress replies of stored recordings (each on its own, so one file's trouble with Slack
        never holds up another's), at most MAX_ANNOUNCING at a time; a failed one is tried again later."""
        from bot.services.recordings import announce
        from bot.slack_api.web_api import slack_for
        from storage.thread import claim_announcement

        hold = self.services.settings.job_lease_seconds
        while len(self.announcing) < MAX_ANNOUNCING and not self._stopping:
            rec = await claim_announcement(self.services.db, hold)
            if rec is None:
                break
            self.announcing.spawn(announce(self.services, rec, partial(slack_for, self.services)),
                                  name=f"announce {rec.id}")

    def _recording_done(self, _task: asyncio.Task) -> None:
        if not self._stopping:
            self.kick()  # a slot is free

    async def purge(self) -> None:
        from storage.retention import purge_expired

        settings = self.services.settings
        try:
            await purge_expired(self.services.db, result_days=settings.result_retention_days,
                                audit_days=settings.audit_retention_days)
        except Exception:
            log.exception("purging expired results failed; will retry")

    async def refresh_tokens(self) -> None:
        from bot.slack_api.tokens import refresh_expiring_tokens

        try:
            await refresh_expiring_tokens(self.services)
        except Exception:
            log.exception("refreshing rotating tokens failed; will retry")
