"""Keeping a running job's lease: renewed in the background while the job runs, the job cancelled the moment
the lease is lost, so it stops touching Slack (shared by recording and enrollment jobs)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from storage.database import UNAVAILABLE_ERRORS, Database
from storage.models import Recording

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker holds the recording now; stop quietly."""


class LeaseKeeper:
    """Renews one running job's lease every third of the lease (`renew` answers whether it is still held);
    when the lease is lost (taken over, or the database unreachable until it ran out) it cancels the job's
    task so the job stops touching Slack. Shared by recordings and enrollment jobs."""

    def __init__(self, renew: Callable[[], Awaitable[bool]], lease: float, task: asyncio.Task, what: str):
        self.renew, self.lease, self.task, self.what = renew, lease, task, what
        self.lost = False

    async def keep(self) -> None:
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                held = await self.renew()
            except UNAVAILABLE_ERRORS as exc:  # the database is down: retry until the lease runs out
                log.warning("%s: lease renewal failed (%s)", self.what, type(exc).__name__)
                held = None
            if held:
                renewed = time.monotonic()
            elif held is False or time.monotonic() - renewed >= self.lease:
                self.lost = True
                self.task.cancel()
                return

    @classmethod
    @contextlib.asynccontextmanager
    async def held(cls, renew: Callable[[], Awaitable[bool]], lease: float, what: str) -> AsyncIterator[LeaseKeeper]:
        """Keeps the current task's lease while the `with` body runs; a lost lease ends the body quietly
        (any other cancellation goes on to the caller)."""
        task = asyncio.current_task()
        keeper = cls(renew, lease, task, what)
        beat = asyncio.get_running_loop().create_task(keeper.keep(), name=f"lease {what}")
        try:
            yield keeper
        except asyncio.CancelledError:
            if not keeper.lost:
                raise
            task.uncancel()
            log.info("%s: lease lost, another worker continues", what)
        finally:
            beat.cancel()  # a renewal in flight runs whole (`storage.database.whole`), then the keeper ends
            await asyncio.wait({beat})


class RecordingRows:
    """A recording's row as this worker (`owner`) holds it under its lease: read fresh, or renewed (with fields
    stored in the same write). What the recording job and its transcript step share."""

    def __init__(self, db: Database, owner: str, lease: int) -> None:
        self.db, self.owner, self.lease = db, owner, lease

    async def get(self, rec_id: int) -> Recording:
        from storage.recordings import get_recording

        return await get_recording(self.db, rec_id)

    async def renew(self, rec_id: int, **fields) -> bool:
        """Renews the lease (storing `fields`); whether this worker still holds it."""
        from storage.recordings import heartbeat

        return await heartbeat(self.db, rec_id, self.owner, self.lease, **fields)

    async def beat(self, rec: Recording, **fields) -> None:
        """`renew`, raising LeaseLost when another worker holds the recording now."""
        if not await self.renew(rec.id, **fields):
            raise LeaseLost()
