"""The job scheduler (APScheduler `AsyncIOScheduler`): claim queued recordings and enrollment jobs and run
them, post the progress replies of newly stored recordings, requeue expired leases, purge expired results,
refresh rotating OAuth tokens."""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
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
    so a cancelled job never leaves a transaction open."""

    def __init__(self, services: Services, *, owner: str | None = None, capacity: int | None = None):
        self.services = services
        self.owner = owner or worker_name()
        self.capacity = capacity or services.settings.engine_workers
        self.recording_job = RecordingJob(services, self.owner)
        self.enrollments = Enrollments(services, self.owner)
        self.active: set[asyncio.Task] = set()
        self.announcing: set[asyncio.Task] = set()
        self._passes: set[asyncio.Task] = set()  # claim passes, purges, token refreshes in flight
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
        self.services.runner = self
        self.kick()

    async def stop(self) -> None:
        """Stop claiming, stop running pipelines and release their recordings at once, so another worker
        resumes them now rather than when the leases expire (a crash still leaves that to the leases)."""
        from storage.enrollments import release_enrollments
        from storage.recordings import release

        self._stopping = True  # no pass starts now, and a pass in flight claims nothing more
        self.services.runner = None
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        await asyncio.gather(*self._passes, return_exceptions=True)
        while running := {t for t in self.active | self.enrollments.active | self.announcing if not t.done()}:
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

    def _pass(self, work: Coroutine) -> asyncio.Task:
        """A pass of this runner's own, awaited by `stop` (never cut off mid-transaction)."""
        task = asyncio.get_running_loop().create_task(work, name=work.__qualname__)
        self._passes.add(task)
        task.add_done_callback(self._passes.discard)
        return task

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

    def start_enrollment(self, job) -> None:
        """Run an enrollment job this runner already holds (claimed at submission, so no claim pass waits)."""
        self.enrollments.start(job)

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
                    self._start(self.active, self.recording_job.run(rec), f"recording {rec.id}")
                await self.announce()
            except Exception:
                log.exception("claiming jobs failed; will retry")

    async def announce(self) -> None:
        """Posts the progress replies of stored recordings (each on its own, so one file's trouble with Slack
        never holds up another's), at most MAX_ANNOUNCING at a time; a failed one is tried again later."""
        from bot.services.recordings import announce
        from storage.thread import claim_announcement

        hold = self.services.settings.job_lease_seconds
        while len(self.announcing) < MAX_ANNOUNCING and not self._stopping:
            rec = await claim_announcement(self.services.db, hold)
            if rec is None:
                break
            self._start(self.announcing, announce(self.services, rec), f"announce {rec.id}")

    def _start(self, tasks: set[asyncio.Task], work: Coroutine, name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, tasks))

    def _finished(self, tasks: set[asyncio.Task], task: asyncio.Task) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s crashed", task.get_name(), exc_info=task.exception())
        if tasks is self.active and not self._stopping:
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
