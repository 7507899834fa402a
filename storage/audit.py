"""The audit log: who did what to which voiceprint, recording or workspace, and when.

Pass an open session to write the row in the caller's transaction (so the change and its audit row
commit together), or the `Database` to write it on its own.
"""
from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.database import Database
from storage.models import AuditAction, AuditEvent


async def record(db_or_session: Database | AsyncSession, *, team_id: str | None, actor_id: str | None,
                 action: AuditAction | str, target_type: str, target_id: str | None,
                 detail: dict | None = None) -> AuditEvent:
    """Adds one audit row; with a session the caller commits, with a Database it is committed here."""
    event = AuditEvent(team_id=team_id, actor_id=actor_id, action=AuditAction(action), target_type=target_type,
                       target_id=target_id, detail=detail)
    if isinstance(db_or_session, Database):
        async with db_or_session.session() as session:
            session.add(event)
            await session.commit()
    else:
        db_or_session.add(event)
        await db_or_session.flush()
    return event
