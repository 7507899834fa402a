"""Voiceprints: up to `MAX_PER_PERSON` per person per engine, each under a name the person gives it (a clip made
with a headset, another with a phone), replaced by name on re-enrolment, deleted for real, every change audited.

A voiceprint is biometric data: it is never logged, never soft-deleted, and the audit rows record that a
change happened (engine, model, clip length, the row's id), never the voiceprint itself nor its name (text the
person typed). Engines see a voiceprint under its `label`: random, unique, never reused, so nothing sent to
an engine names the person, and a label that comes back after its voiceprint was deleted maps to nobody.

Delete wins: every delete (one voiceprint or all) raises the person's deletion generation in the same
transaction, and an enrollment stores its voiceprint only if the generation is still the one it read when it
started. Both lock the generation row first (PostgreSQL) or the whole database (SQLite `BEGIN IMMEDIATE`), so a
delete and a save never interleave, whichever processes run them; the same lock makes the count of a person's
voiceprints safe from two enrollments saving at once. Removing the app from a workspace raises the workspace's
own generation (user `WORKSPACE`), which every enrollment there counts too.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from storage import audit
from storage.database import Database, whole
from storage.models import VOICEPRINT_NAME_MAX, AuditAction, DeletionGeneration, Voiceprint, utcnow

_IN_CHUNK = 500
WORKSPACE = "*"  # the generation row that an uninstall raises for everyone in the workspace
MAX_PER_PERSON = 3  # voiceprints a person keeps per engine
DEFAULT_NAME = "default"


def new_label() -> str:
    """A voiceprint's engine label: random (96 bits), so it says nothing of the person and is never reused."""
    return "vp" + secrets.token_hex(12)


class EnrollmentCancelled(Exception):
    """The person deleted their voiceprint after this enrollment started: its voiceprint is not stored."""


class TooManyVoiceprints(Exception):
    """The person already has `MAX_PER_PERSON` voiceprints for this engine and this one has a new name."""

    def __init__(self, names: list[str]):
        super().__init__(f"already {len(names)} voiceprints")
        self.names = names


def _check(team_id: str, user_id: str, engine: str, model_id: str, voiceprint: str, consent_at: datetime,
           clip_duration: float, name: str) -> None:
    missing = [n for n, v in {"team_id": team_id, "user_id": user_id, "engine": engine, "model_id": model_id,
                              "voiceprint": voiceprint, "name": name}.items() if not v]
    if missing:
        raise ValueError(f"cannot store a voiceprint without {', '.join(missing)}")
    if len(name) > VOICEPRINT_NAME_MAX:
        raise ValueError(f"a voiceprint's name has at most {VOICEPRINT_NAME_MAX} characters")
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
                            generation: int | None = None, consent_text: str | None = None,
                            name: str = DEFAULT_NAME, max_per_person: int = MAX_PER_PERSON
                            ) -> tuple[Voiceprint, bool]:
    """Stores the person's voiceprint named `name` for `engine` with their consent (its time and the text they
    ticked); True when it replaced their earlier one of that name (which keeps its label; the old one leaves
    SQLite's files as a deleted one does). Audited
    (enroll/replace). A new name beyond `max_per_person` raises TooManyVoiceprints.

    With `generation` (from `deletion_generation` when the enrollment started) it raises EnrollmentCancelled
    instead when the person deleted any of their voiceprints since."""
    _check(team_id, user_id, engine, model_id, voiceprint, consent_at, clip_duration, name)
    consent = (consent_at, consent_text)
    for attempt in range(2):
        try:
            stored = await whole(_upsert(db, (team_id, user_id, engine, name), model_id, voiceprint, consent,
                                         clip_duration, generation, max_per_person))  # a job may be cancelled
            if stored[1]:  # the replaced voiceprint's pages: out of the files, as after a deletion
                await db.checkpoint()
            return stored
        except IntegrityError:
            if attempt:  # a concurrent first enrolment won the insert; the second pass replaces it
                raise
    raise AssertionError("unreachable")


async def _upsert(db: Database, key: tuple[str, str, str, str], model_id: str, voiceprint: str,
                  consent: tuple[datetime, str | None], clip_duration: float, generation: int | None,
                  max_per_person: int) -> tuple[Voiceprint, bool]:
    team_id, user_id, engine, name = key
    consent_at, consent_text = consent
    async with db.session(immediate=True) as s:
        for who in (user_id, WORKSPACE):  # the generation rows are the person's lock (PostgreSQL)
            await s.exec(_generation_row(db, team_id, who, bump=False))
        current = sum((await s.exec(_generations(team_id, user_id).with_for_update())).all())
        if generation is not None and current != generation:
            raise EnrollmentCancelled(f"{team_id}/{user_id} deleted their voiceprint during the enrollment")
        mine = (await s.exec(select(Voiceprint).where(Voiceprint.team_id == team_id, Voiceprint.user_id == user_id,
                                                      Voiceprint.engine == engine)
                             .order_by(Voiceprint.created_at, Voiceprint.id).with_for_update())).all()
        row = next((v for v in mine if v.name == name), None)
        now = utcnow()
        replaced = row is not None
        if row is None:
            if len(mine) >= max_per_person:
                raise TooManyVoiceprints([v.name for v in mine])
            row = Voiceprint(team_id=team_id, user_id=user_id, engine=engine, name=name, label=new_label(),
                             model_id=model_id, voiceprint=voiceprint, consent_at=consent_at,
                             consent_text=consent_text, clip_duration=clip_duration, created_at=now, updated_at=now)
            s.add(row)
        else:
            row.model_id, row.voiceprint, row.consent_at = model_id, voiceprint, consent_at
            row.consent_text = consent_text
            row.clip_duration, row.updated_at = clip_duration, now
        await s.flush()
        await audit.record(s, team_id=team_id, actor_id=user_id,
                           action=AuditAction.replace if replaced else AuditAction.enroll,
                           target_type="voiceprint", target_id=user_id,
                           detail={"engine": engine, "model_id": model_id, "clip_duration": clip_duration,
                                   "voiceprint_id": row.id})
        await s.commit()
        return row, replaced


async def get_voiceprint(db: Database, team_id: str, user_id: str, engine: str | None = None,
                        name: str | None = None) -> Voiceprint | None:
    """The person's voiceprint for `engine` (and `name`), or their most recently updated one."""
    stmt = select(Voiceprint).where(Voiceprint.team_id == team_id, Voiceprint.user_id == user_id)
    if engine is not None:
        stmt = stmt.where(Voiceprint.engine == engine)
    if name is not None:
        stmt = stmt.where(Voiceprint.name == name)
    stmt = stmt.order_by(Voiceprint.updated_at.desc(), Voiceprint.id.desc()).limit(1)
    async with db.session() as s:
        return (await s.exec(stmt)).first()


async def list_voiceprints(db: Database, team_id: str, user_id: str, engine: str | None = None) -> list[Voiceprint]:
    """The person's voiceprints (for `engine`, else every engine's), oldest first."""
    stmt = select(Voiceprint).where(Voiceprint.team_id == team_id, Voiceprint.user_id == user_id)
    if engine is not None:
        stmt = stmt.where(Voiceprint.engine == engine)
    async with db.session() as s:
        return list((await s.exec(stmt.order_by(Voiceprint.created_at, Voiceprint.id))).all())


async def delete_voiceprints(db: Database, team_id: str, user_id: str, actor_id: str | None,
                             name: str | None = None) -> int:
    """Deletes the person's voiceprints for every engine, or only those named `name` (a real DELETE, gone from
    the SQLite files too) and audits it; returns how many. Either way enrollments that started before it can
    no longer store theirs (the generation is raised first)."""
    async with db.session(immediate=True) as s:
        await s.exec(_generation_row(db, team_id, user_id, bump=True))
        stmt = delete(Voiceprint).where(Voiceprint.team_id == team_id, Voiceprint.user_id == user_id)
        if name is not None:
            stmt = stmt.where(Voiceprint.name == name)
        engines = sorted(e for (e,) in (await s.exec(stmt.returning(Voiceprint.engine))).all())
        if engines:
            await audit.record(s, team_id=team_id, actor_id=actor_id, action=AuditAction.delete,
                               target_type="voiceprint", target_id=user_id,
                               detail={"engines": engines, "count": len(engines), "all": name is None})
        await s.commit()
    if engines:
        await db.checkpoint()  # the -wal file still holds the deleted voiceprints' pages
    return len(engines)


async def voiceprints_for_users(db: Database, team_id: str, user_ids: Iterable[str], engine: str,
                                limit: int | None = None) -> list[Voiceprint]:
    """Every voiceprint of these people for `engine`: each person's newest first, people in the order of
    `user_ids`, at most `limit`."""
    wanted = list(dict.fromkeys(u for u in user_ids if u))
    found: dict[str, list[Voiceprint]] = {}
    async with db.session() as s:
        for i in range(0, len(wanted), _IN_CHUNK):
            stmt = (select(Voiceprint).where(Voiceprint.team_id == team_id, Voiceprint.engine == engine,
                                             Voiceprint.user_id.in_(wanted[i:i + _IN_CHUNK]))
                    .order_by(Voiceprint.updated_at.desc(), Voiceprint.id.desc()))
            for v in (await s.exec(stmt)).all():
                found.setdefault(v.user_id, []).append(v)
    rows = [v for u in wanted for v in found.get(u, [])]
    return rows if limit is None else rows[:limit]


async def owners_of_labels(db: Database, team_id: str, labels: Iterable[str]) -> dict[str, str]:
    """label → the person whose voiceprint it is, for the labels of this workspace's voiceprints that still
    exist (a deleted voiceprint's label maps to nobody)."""
    wanted = sorted({x for x in labels if x})
    owners: dict[str, str] = {}
    async with db.session() as s:
        for i in range(0, len(wanted), _IN_CHUNK):
            stmt = select(Voiceprint.label, Voiceprint.user_id).where(Voiceprint.team_id == team_id,
                                                                      Voiceprint.label.in_(wanted[i:i + _IN_CHUNK]))
            owners.update(dict((await s.exec(stmt)).all()))
    return owners


async def count_voiceprints(db: Database) -> dict[str, int]:
    """Voiceprints stored per engine (a count, never their content), for the metrics."""
    async with db.session() as s:
        rows = (await s.exec(select(Voiceprint.engine, func.count()).group_by(Voiceprint.engine))).all()
    return dict(rows)
