"""Voiceprints: one per person per engine, replaced on re-enrolment, deleted for real, every change audited.

A voiceprint is biometric data: it is never logged, never soft-deleted, and the audit rows record that a
change happened (engine, model, clip length), never the voiceprint itself.

Delete wins: every delete raises the person's deletion generation in the same transaction, and an
enrollment stores its voiceprint only if the generation is still the one it read when it started. Both
lock the generation row first (PostgreSQL) or the whole database (SQLite `BEGIN IMMEDIATE`), so a delete
and a save never interleave, whichever processes run them. Removing the app from a workspace raises the
workspace's own generation (user `WORKSPACE`), which every enrollment there counts too.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from storage import audit
from storage.database import Database
from storage.models import AuditAction, DeletionGeneration, Voiceprint, utcnow

_IN_CHUNK = 500
WORKSPACE = "*"  # the generation row that an uninstall raises for everyone in the workspace


class EnrollmentCancelled(Exception):
    """The person deleted their voiceprint after this enrollment started: its voiceprint is not stored."""


def _check(team_id: str, user_id: str, engine: str, model_id: str, voiceprint: str, consent_at: datetime,
           clip_duration: float) -> None:
    missing = [n for n, v in {"team_id": team_id, "user_id": user_id, "engine": engine, "model_id": model_id,
                              "voiceprint": voiceprint}.items() if not v]
    if missing:
        raise ValueError(f"cannot store a voiceprint without {', '.join(missing)}")
    if consent_at.tzinfo is None:
        raise ValueError("consent_at must be a timezone-aware datetime (UTC)")
    if not clip_duration > 0:
        raise ValueError(f"clip_duration must be positive seconds (got {clip_duration})")


def _generations(team_id: str, user_id: str):
    """The person's and the workspace's generation rows: any delete or uninstall raises their sum."""
    return select(DeletionGeneration.generation).where(DeletionGeneration.team_id == team_id,
                                                       DeletionGeneration.user_id.in_([user_id, WORKSPACE]))


async def deletion_generation(db: Database, team_id: str, user_id: str) -> int:
    """The person's deletion generation (0 before their first delete or an uninstall): read when an
    enrollment starts."""
    async with db.session() as s:
        return sum((await s.exec(_generations(team_id, user_id))).all())


async def raise_workspace_generation(s, db: Database, team_id: str) -> None:
    """Inside an uninstall's transaction: enrollments already running in the workspace can no longer save."""
    await s.exec(_generation_row(db, team_id, WORKSPACE, bump=True))


def _generation_row(db: Database, team_id: str, user_id: str, *, bump: bool):
    """INSERT the person's generation row (1 when bumping, else 0); on conflict raise it by one or leave it."""
    insert = sqlite_insert if db.dialect == "sqlite" else pg_insert
    stmt = insert(DeletionGeneration).values(team_id=team_id, user_id=user_id, generation=int(bump),
                                             updated_at=utcnow())
    keys = ["team_id", "user_id"]
    if not bump:
        return stmt.on_conflict_do_nothing(index_elements=keys)
    return stmt.on_conflict_do_update(index_elements=keys, set_={
        "generation": DeletionGeneration.generation + 1, "updated_at": stmt.excluded.updated_at})


async def upsert_voiceprint(db: Database, *, team_id: str, user_id: str, engine: str, model_id: str,
                            voiceprint: str, consent_at: datetime, clip_duration: float,
                            generation: int | None = None, consent_text: str | None = None
                            ) -> tuple[Voiceprint, bool]:
    """Stores the person's voiceprint for `engine` with their consent (its time and the text they ticked);
    True when it replaced an earlier one. Audited (enroll/replace).

    With `generation` (from `deletion_generation` when the enrollment started) it raises EnrollmentCancelled
    instead when the person deleted their voiceprints since."""
    _check(team_id, user_id, engine, model_id, voiceprint, consent_at, clip_duration)
    consent = (consent_at, consent_text)
    for attempt in range(2):
        try:
            return await _upsert(db, team_id, user_id, engine, model_id, voiceprint, consent, clip_duration,
                                 generation)
        except IntegrityError:
            if attempt:  # a concurrent first enrolment won the insert; the second pass replaces it
                raise
    raise AssertionError("unreachable")


async def _upsert(db: Database, team_id: str, user_id: str, engine: str, model_id: str, voiceprint: str,
                  consent: tuple[datetime, str | None], clip_duration: float, generation: int | None
                  ) -> tuple[Voiceprint, bool]:
    consent_at, consent_text = consent
    async with db.session(immediate=True) as s:
        if generation is not None:
            for who in (user_id, WORKSPACE):
                await s.exec(_generation_row(db, team_id, who, bump=False))
            current = sum((await s.exec(_generations(team_id, user_id).with_for_update())).all())
            if current != generation:
                raise EnrollmentCancelled(f"{team_id}/{user_id} deleted their voiceprint during the enrollment")
        stmt = select(Voiceprint).where(Voiceprint.team_id == team_id, Voiceprint.user_id == user_id,
                                        Voiceprint.engine == engine).with_for_update()
        row = (await s.exec(stmt)).first()
        now = utcnow()
        replaced = row is not None
        if row is None:
            row = Voiceprint(team_id=team_id, user_id=user_id, engine=engine, model_id=model_id,
                             voiceprint=voiceprint, consent_at=consent_at, consent_text=consent_text,
                             clip_duration=clip_duration, created_at=now, updated_at=now)
            s.add(row)
        else:
            row.model_id, row.voiceprint, row.consent_at = model_id, voiceprint, consent_at
            row.consent_text = consent_text
            row.clip_duration, row.updated_at = clip_duration, now
        await s.flush()
        await audit.record(s, team_id=team_id, actor_id=user_id,
                           action=AuditAction.replace if replaced else AuditAction.enroll,
                           target_type="voiceprint", target_id=user_id,
                           detail={"engine": engine, "model_id": model_id, "clip_duration": clip_duration})
        await s.commit()
        return row, replaced


async def get_voiceprint(db: Database, team_id: str, user_id: str, engine: str | None = None) -> Voiceprint | None:
    """The person's voiceprint for `engine`, or their most recently updated one for any engine."""
    stmt = select(Voiceprint).where(Voiceprint.team_id == team_id, Voiceprint.user_id == user_id)
    if engine is not None:
        stmt = stmt.where(Voiceprint.engine == engine)
    stmt = stmt.order_by(Voiceprint.updated_at.desc(), Voiceprint.id.desc()).limit(1)
    async with db.session() as s:
        return (await s.exec(stmt)).first()


async def delete_voiceprints(db: Database, team_id: str, user_id: str, actor_id: str | None) -> int:
    """Deletes the person's voiceprints for every engine (a real DELETE, gone from the SQLite files too) and
    audits it; returns how many. Enrollments that started before it can no longer store theirs (the generation
    is raised first)."""
    async with db.session(immediate=True) as s:
        await s.exec(_generation_row(db, team_id, user_id, bump=True))
        stmt = (delete(Voiceprint).where(Voiceprint.team_id == team_id, Voiceprint.user_id == user_id)
                .returning(Voiceprint.engine))
        engines = sorted(e for (e,) in (await s.exec(stmt)).all())
        if engines:
            await audit.record(s, team_id=team_id, actor_id=actor_id, action=AuditAction.delete,
                               target_type="voiceprint", target_id=user_id,
                               detail={"engines": engines, "count": len(engines)})
        await s.commit()
    if engines:
        await db.checkpoint()  # the -wal file still holds the deleted voiceprints' pages
    return len(engines)


async def voiceprints_for_users(db: Database, team_id: str, user_ids: Iterable[str], engine: str,
                                limit: int = 50) -> list[Voiceprint]:
    """The voiceprints of these people for `engine`, in the order of `user_ids`, at most `limit`
    (the identify API takes at most 50)."""
    wanted = list(dict.fromkeys(u for u in user_ids if u))
    found: dict[str, Voiceprint] = {}
    async with db.session() as s:
        for i in range(0, len(wanted), _IN_CHUNK):
            stmt = select(Voiceprint).where(Voiceprint.team_id == team_id, Voiceprint.engine == engine,
                                            Voiceprint.user_id.in_(wanted[i:i + _IN_CHUNK]))
            found.update((v.user_id, v) for v in (await s.exec(stmt)).all())
    return [found[u] for u in wanted if u in found][:limit]


async def count_voiceprints(db: Database) -> dict[str, int]:
    """Voiceprints stored per engine (a count, never their content), for the metrics."""
    async with db.session() as s:
        rows = (await s.exec(select(Voiceprint.engine, func.count()).group_by(Voiceprint.engine))).all()
    return dict(rows)
