"""The lease machinery that every job table shares (recordings, enrollment jobs): a row is worked on by the
one worker whose `lease_owner` it names until `lease_expires_at`; every write of a worker is a conditional
UPDATE that applies only while it still holds the lease. A job table has `id`, `status`, `lease_owner`,
`lease_expires_at`, `updated_at` and `not_before` (the earliest time a queued row may be claimed again).

Retry backoff: a failed attempt waits `retry_delay` before the next (15 s, 60 s, 240 s, … capped), so an
engine outage does not use up every attempt within a minute.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import or_, update
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from storage.database import Database, whole
from storage.models import utcnow

T = TypeVar("T")
_LOCK_RETRIES = 5
NO_SYNC = {"synchronize_session": False}


async def retry_locked(db: Database, attempt: Callable[[], Awaitable[T]]) -> T:
    """Runs `attempt` (one transaction, run whole: see `storage.database.whole`), retrying when SQLite stayed
    locked past its busy timeout (a lost race, not an error)."""
    for n in range(_LOCK_RETRIES):
        try:
            return await whole(attempt())
        except OperationalError as exc:
            if db.dialect != "sqlite" or "locked" not in str(exc) or n == _LOCK_RETRIES - 1:
                raise
            await asyncio.sleep(0.05 * (n + 1))
    raise AssertionError("unreachable")


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait before the next attempt after `attempts` failed ones: base × 4^(attempts-1), capped."""
    if attempts < 1 or base <= 0:
        return 0.0
    return min(cap, base * 4 ** min(attempts - 1, 20))


def due(model: Any, now: datetime) -> Any:
    """A queued row whose backoff (if any) has passed."""
    return or_(model.not_before.is_(None), model.not_before <= now)


async def execute(db: Database, stmts: Iterable[Any], *, immediate: bool = True) -> int:
    """Runs UPDATE/DELETE statements in one transaction; returns the rows they touched."""
    async def attempt() -> int:
        async with db.session(immediate=immediate) as s:
            total = 0
            for stmt in stmts:
                total += (await s.exec(stmt.execution_options(**NO_SYNC))).rowcount
            await s.commit()
            return total

    return await retry_locked(db, attempt)


async def claim(db: Database, model: Any, pick: Any, claimable: Any, values: dict[str, Any]) -> Any | None:
    """One conditional UPDATE of the row `pick` selects (while it is still `claimable`); returns it or None."""
    stmt = (update(model).where(model.id == pick, claimable).values(**values).returning(model)
            .execution_options(**NO_SYNC))

    async def attempt() -> Any | None:
        async with db.session(immediate=True) as s:
            claimed = (await s.exec(stmt)).scalars().first()
            await s.commit()
            return claimed

    return await retry_locked(db, attempt)


async def update_if(db: Database, model: Any, row_id: int, *conditions: Any, **values: Any) -> bool:
    """One conditional UPDATE of a row (stamping `updated_at`); True when it applied."""
    stmt = (update(model).where(model.id == row_id, *conditions).values(updated_at=utcnow(), **values)
            .returning(model.id).execution_options(**NO_SYNC))

    async def attempt() -> bool:
        async with db.session() as s:
            changed = (await s.exec(stmt)).first() is not None
            await s.commit()
            return changed

    return await retry_locked(db, attempt)


async def update_owned(db: Database, model: Any, row_id: int, owner: str, statuses: tuple[str, ...],
                       values: dict[str, Any]) -> bool:
    """One conditional UPDATE that only applies while `owner` holds the lease in one of `statuses`."""
    return await update_if(db, model, row_id, model.lease_owner == owner, model.status.in_(statuses), **values)


def lease_until(lease_seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=lease_seconds)


async def lease_owners(db: Database, models: Iterable[Any], prefix: str) -> list[str]:
    """The workers (by name prefix, e.g. this host's) holding leases now, in any of the job tables."""
    found: set[str] = set()
    async with db.session() as s:
        for model in models:
            stmt = select(model.lease_owner).where(model.lease_owner.startswith(prefix, autoescape=True)).distinct()
            found.update(owner for owner in (await s.exec(stmt)).all() if owner)
    return sorted(found)


async def expire_leases(db: Database, models: Iterable[Any], owners: list[str], *,
                        now: datetime | None = None) -> int:
    """Ends the leases of workers known to be dead, so their work is treated as a crash now."""
    if not owners:
        return 0
    now = now or utcnow()
    return await execute(db, [update(m).where(m.lease_owner.in_(owners), m.lease_expires_at > now)
                              .values(lease_expires_at=now) for m in models])
