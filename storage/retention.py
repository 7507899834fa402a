"""Retention: results and relabels are kept `result_days` after a recording finished, audit rows `audit_days`.

The scheduler calls `purge_expired` daily; each run leaves one `purge` audit row with what it removed.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update

from storage import audit
from storage.database import Database
from storage.models import AuditAction, AuditEvent, Recording, utcnow


async def purge_expired(db: Database, *, result_days: int, audit_days: int,
                        now: datetime | None = None) -> dict[str, int]:
    """Clears old results and deletes old audit rows; returns {"results": n, "audit_events": n}."""
    if result_days < 1 or audit_days < 1:
        raise ValueError(f"retention periods must be at least one day (got {result_days=}, {audit_days=})")
    now = now or utcnow()
    result_cutoff, audit_cutoff = now - timedelta(days=result_days), now - timedelta(days=audit_days)
    async with db.session(immediate=True) as s:
        cleared = await s.exec(
            update(Recording)
            .where(Recording.finished_at < result_cutoff,
                   or_(Recording.result.is_not(None), Recording.relabels.is_not(None)))
            .values(result=None, relabels=None, updated_at=now)
            .execution_options(synchronize_session=False))
        removed = await s.exec(delete(AuditEvent).where(AuditEvent.created_at < audit_cutoff)
                               .execution_options(synchronize_session=False))
        counts = {"results": cleared.rowcount, "audit_events": removed.rowcount}
        await audit.record(s, team_id=None, actor_id=None, action=AuditAction.purge, target_type="retention",
                           target_id=None, detail={"result_days": result_days, "audit_days": audit_days, **counts})
        await s.commit()
    await db.checkpoint()  # the -wal file still holds the cleared results' pages
    return counts
