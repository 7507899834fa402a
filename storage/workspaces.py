"""Slack installations (one row per workspace), uninstall purges, OAuth states.

A workspace is identified by `install_key` = "<enterprise or ->:<team>", because a UNIQUE constraint treats
NULLs as distinct and a workspace outside an Enterprise Grid org has no enterprise id. Org-wide installs are
not supported (jobs and uninstall purges work per workspace): they are refused, never stored.
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from storage import audit
from storage.database import Database
from storage.models import (
    AuditAction,
    NearMatch,
    OAuthState,
    Recording,
    RecordingStatus,
    ReidentifyPress,
    Voiceprint,
    Workspace,
    utcnow,
)
from storage.voiceprints import raise_workspace_generation

WORKSPACE_FIELDS = frozenset(Workspace.model_fields) - {"id", "install_key"}


class OrgWideInstall(ValueError):
    """An Enterprise Grid org-wide install: refused, never stored."""


class TooManyStates(RuntimeError):
    """As many OAuth states are pending as allowed: no new install can start until some finish or expire."""
_IN_FLIGHT = (RecordingStatus.queued.value, RecordingStatus.running.value, RecordingStatus.succeeded.value)


def install_key(team_id: str, enterprise_id: str | None) -> str:
    return f"{enterprise_id or '-'}:{team_id}"


async def save_workspace(db: Database, **fields: Any) -> Workspace:
    """Creates or updates the installation named by team_id / enterprise_id (OrgWideInstall for an org-wide one).

    Saving again (a re-install, a token refresh) updates the given fields and marks it installed."""
    unknown = set(fields) - WORKSPACE_FIELDS
    if unknown:
        raise ValueError(f"unknown workspace fields: {', '.join(sorted(unknown))}")
    team_id, enterprise_id = fields.get("team_id"), fields.get("enterprise_id")
    if fields.get("is_enterprise_install"):
        raise OrgWideInstall("org-wide (enterprise) installs are not supported: install Voice ID per workspace")
    if not team_id:
        raise ValueError("a workspace needs a team_id")
    key = install_key(team_id, enterprise_id)
    fields.setdefault("uninstalled_at", None)
    for attempt in range(2):
        try:
            async with db.session(immediate=True) as s:
                row = (await s.exec(select(Workspace).where(Workspace.install_key == key).with_for_update())).first()
                if row is None:
                    row = Workspace(install_key=key, **fields)
                    s.add(row)
                else:
                    for name, value in fields.items():
                        setattr(row, name, value)
                await s.commit()
                return row
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


async def get_workspace(db: Database, team_id: str | None, enterprise_id: str | None = None, *,
                        include_uninstalled: bool = False) -> Workspace | None:
    """The installation serving this team (never an org-wide install: those are not supported)."""
    if not team_id:
        return None
    active = [] if include_uninstalled else [Workspace.uninstalled_at.is_(None)]
    stmt = select(Workspace).where(Workspace.team_id == team_id, Workspace.is_enterprise_install.is_(False), *active)
    if enterprise_id:
        stmt = stmt.where(Workspace.enterprise_id == enterprise_id)
    async with db.session() as s:
        return (await s.exec(stmt.order_by(Workspace.installed_at.desc()).limit(1))).first()


async def purge_workspace(db: Database, team_id: str | None, enterprise_id: str | None = None) -> dict[str, int]:
    """After `app_uninstalled` / `tokens_revoked`: forget the tokens, delete the voiceprints, clear the
    recordings' results, stop their jobs and forget who pressed "Identify again" when — all in one
    transaction, with one audit row."""
    if not (team_id or enterprise_id):
        raise ValueError("purge_workspace needs a team_id or an enterprise_id")
    now = utcnow()
    async with db.session(immediate=True) as s:
        if team_id:
            which = Workspace.team_id == team_id
            if enterprise_id:
                which = and_(which, Workspace.enterprise_id == enterprise_id)
            teams = [team_id]
        else:
            which = Workspace.enterprise_id == enterprise_id
            teams = [t for (t,) in (await s.exec(select(Workspace.team_id).where(which))).all() if t]
        forget = {"bot_token": None, "bot_refresh_token": None, "bot_token_expires_at": None, "uninstalled_at": now}
        counts = {"workspaces": await _rowcount(s, update(Workspace).where(which).values(**forget))}
        for team in teams:
            await raise_workspace_generation(s, db, team)
        counts["voiceprints"] = await _rowcount(s, delete(Voiceprint).where(Voiceprint.team_id.in_(teams)))
        counts["cancelled"] = await _rowcount(s, update(Recording).where(
            Recording.team_id.in_(teams), Recording.status.in_(_IN_FLIGHT)).values(
            status=RecordingStatus.failed.value, error_code="app_uninstalled", finished_at=now, updated_at=now,
            error_message="Voice ID was removed from this workspace.", lease_owner=None, lease_expires_at=None))
        counts["results"] = await _rowcount(s, update(Recording).where(
            Recording.team_id.in_(teams), Recording.result.is_not(None) | Recording.relabels.is_not(None)).values(
            result=None, relabels=None, updated_at=now))
        counts["presses"] = await _rowcount(s, delete(ReidentifyPress).where(ReidentifyPress.team_id.in_(teams)))
        await s.exec(delete(NearMatch).where(NearMatch.team_id.in_(teams)))
        await audit.record(s, team_id=team_id, actor_id=None, action=AuditAction.uninstall,
                           target_type="workspace", target_id=team_id or enterprise_id,
                           detail={"enterprise_id": enterprise_id, **counts})
        await s.commit()
    await db.checkpoint()  # the -wal file still holds the deleted voiceprints' and results' pages
    return counts


async def _rowcount(s: Any, stmt: Any) -> int:
    return (await s.exec(stmt.execution_options(synchronize_session=False))).rowcount


async def issue_state(db: Database, ttl_s: int, *, cap: int | None = None) -> str:
    """A new one-time OAuth `state`, valid for `ttl_s` seconds; expired ones are swept on the way. With `cap`,
    at most that many are pending at once (anyone can ask for one): beyond it, TooManyStates."""
    state = secrets.token_urlsafe(32)
    now = utcnow()
    async with db.session(immediate=True) as s:
        await s.exec(delete(OAuthState).where(OAuthState.expires_at < now))
        if cap is not None and (await s.exec(select(func.count()).select_from(OAuthState))).one() >= cap:
            await s.commit()  # keep the sweep
            raise TooManyStates(f"{cap} OAuth states are pending")
        s.add(OAuthState(state=state, expires_at=now + timedelta(seconds=ttl_s)))
        await s.commit()
    return state


async def consume_state(db: Database, state: str) -> bool:
    """True once for a state that was issued and has not expired; it cannot be used again."""
    if not state:
        return False
    async with db.session() as s:
        stmt = delete(OAuthState).where(OAuthState.state == state).returning(OAuthState.expires_at)
        expires_at = (await s.exec(stmt)).scalar_one_or_none()
        await s.commit()
    return expires_at is not None and expires_at > utcnow()
