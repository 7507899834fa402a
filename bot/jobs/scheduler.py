"""The job scheduler (APScheduler `AsyncIOScheduler`): claim queued recordings and enrollment jobs and run
them, requeue expired leases, purge expired results, refresh rotating OAuth tokens."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.jobs.enrollment_job import Enrollments
from bot.jobs.recording_job import RecordingJob
from bot.metrics import LEASE_TAKEOVERS
from bot.scratch import pid_alive
from bot.services.context import Services

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 3600
REFRESH_EVERY_SECONDS = 1800


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
    """Runs up to `capacity` recordings (and as many enrollments) at once in this process; several processes
    may share a database."""

    def __init__(self, services: Services, *, owner: str | None = None, capacity: int | None = None):
        self.services = services
        self.owner = owner or worker_name()
        self.capacity = capacity or services.settings.engine_workers
        self.recording_job = RecordingJob(services, self.owner)
        self.enrollments = Enrollments(services, self.owner)
        self.active: set[asyncio.Task] = set()
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
        self._scheduler.add_job(self.tick, "interval", seconds=settings.job_poll_seconds, id="claim", **common)
        self._scheduler.add_job(self.purge, "interval", seconds=PURGE_EVERY_SECONDS, id="purge",
                                next_run_time=datetime.now(UTC), **common)
        if self.services.oauth:
            # At start too: a process started shortly before a token expires must not wait a whole interval.
            self._scheduler.add_job(self.refresh_tokens, "interval", seconds=REFRESH_EVERY_SECONDS, id="refresh",
                                    next_run_time=datetime.now(UTC), **common)
        self._scheduler.start()
        self.services.runner = self
        self.kick()

    async def stop(self) -> None:
        """Stop claiming, stop running pipelines and release their recordings at once, so another worker
        resumes them now rather than when the leases expire (a crash still leaves that to the leases)."""
        from storage.enrollments import release_enrollments
        from storage.recordings import release

        self.services.runner = None
        # A claim pass in flight finishes first: shutting the scheduler down cancels its running job, and a
        # pass cut off mid-transaction can leave SQLite locked past the release below.
        async with self._lock:
            if self._scheduler is not None:
                self._scheduler.shutdown(wait=False)
                self._scheduler = None
        running = self.active | self.enrollments.active
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        try:
            released = await release(self.services.db, self.owner)
            released += await release_enrollments(self.services.db, self.owner)
        except Exception:
            log.exception("releasing this worker's recordings failed; their leases will expire")
        else:
            if released:
                log.info("released %d job(s) for other workers", released)

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

    def start_enrollment(self, job) -> None:
        """Run an enrollment job this runner already holds (claimed at submission, so no claim pass waits)."""
        self.enrollments.start(job)

    def kick(self) -> None:
        """Look for work now rather than at the next interval."""
        self.services.spawn(self.tick(), name="claim")

    async def tick(self) -> None:
        from storage.enrollments import claim_enrollment, requeue_expired_enrollments
        from storage.recordings import claim_next, requeue_expired

        if self._lock.locked():
            return
        async with self._lock:
            settings = self.services.settings
            try:
                LEASE_TAKEOVERS.labels("recording").inc(await requeue_expired(self.services.db,
                                                                             settings.job_max_attempts))
                LEASE_TAKEOVERS.labels("enrollment").inc(await requeue_expired_enrollments(self.services.db))
                while len(self.enrollments.active) < self.capacity:
                    job = await claim_enrollment(self.services.db, self.owner, settings.job_lease_seconds)
                    if job is None:
                        break
                    self.enrollments.start(job)
                while len(self.active) < self.capacity:
                    rec = await claim_next(self.services.db, self.owner, settings.job_lease_seconds)
                    if rec is None:
                        break
                    task = asyncio.get_running_loop().create_task(self.recording_job.run(rec), name=f"recording {rec.id}")
                    self.active.add(task)
                    task.add_done_callback(self._finished)
            except Exception:
                log.exception("claiming jobs failed; will retry")

    def _finished(self, task: asyncio.Task) -> None:
        self.active.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a recording job crashed", exc_info=task.exception())
        if self._scheduler is not None:
            self.kick()

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
