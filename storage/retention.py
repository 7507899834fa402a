"""What is kept and for how long, and a person's data on request.

Retention: results and relabels are kept `result_days` after a recording finished, audit rows `audit_days`.
The scheduler calls `purge_expired` every hour; each run leaves one `purge` audit row with what it removed.

A person's data, for data-protection requests: what is stored about them (`stored_about`, for an export that
never holds the voiceprint itself) and taking their name out of stored meeting results (`redact_recording`).
A Slack user id is the voiceprint label engines match against, so a stored result names a person wherever that
id appears: a speaker's `match`, the `speaker` of an identification segment, a key of a confidence map (they
were compared), a transcript segment's speaker (engines that transcribe), and a claim in the relabels. `redact`
takes the id out of every one of those places — the diarization speaker it was matched to stays, unnamed —
and then out of any other place it might hold, so nothing names them whatever an engine put in. Meeting
content is sealed at rest, so recordings are read through the model (never raw SQL), in batches.
"""
from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, update
from sqlmodel import select

from storage import audit
from storage.database import Database
from storage.leases import retry_locked
from storage.models import (
    AuditAction,
    AuditEvent,
    DeletionGeneration,
    EnrollmentJob,
    NearMatch,
    Recording,
    ReidentifyPress,
    Voiceprint,
    Workspace,
    utcnow,
)


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
        await s.exec(delete(NearMatch).where(NearMatch.recording_id.in_(  # their questions go with the results
            select(Recording.id).where(Recording.finished_at < result_cutoff)))
            .execution_options(synchronize_session=False))
        removed = await s.exec(delete(AuditEvent).where(AuditEvent.created_at < audit_cutoff)
                               .execution_options(synchronize_session=False))
        counts = {"results": cleared.rowcount, "audit_events": removed.rowcount}
        await audit.record(s, team_id=None, actor_id=None, action=AuditAction.purge, target_type="retention",
                           target_id=None, detail={"result_days": result_days, "audit_days": audit_days, **counts})
        await s.commit()
    await db.checkpoint()  # the -wal file still holds the cleared results' pages
    return counts


TRANSCRIPTS = ("turnLevelTranscription", "wordLevelTranscription")
_BATCH = 50


# -- a person's data; pure: where a result names someone, and the result without them -----------------------

def holds(value: Any, user_id: str) -> bool:
    """`user_id` appears anywhere in a stored result or relabel map, as a value or as a key."""
    if isinstance(value, dict):
        return any(k == user_id or holds(v, user_id) for k, v in value.items())
    if isinstance(value, list):
        return any(holds(v, user_id) for v in value)
    return value == user_id


def matched_speakers(result: dict | None, user_id: str) -> list[str]:
    """The diarization speakers a voiceprint match named `user_id` (usually one)."""
    found = [m.get("speaker") for m in (result or {}).get("voiceprints") or [] if m.get("match") == user_id]
    found += [s.get("diarizationSpeaker") for s in (result or {}).get("identification") or []
              if user_id in (s.get("match"), s.get("speaker"))]
    return [s for s in dict.fromkeys(found) if s]


def claimed_speakers(relabels: dict | None, user_id: str) -> list[str]:
    """The diarization speakers `user_id` claimed ("This is me")."""
    return [speaker for speaker, who in (relabels or {}).items() if who == user_id]


def redact(result: dict | None, user_id: str) -> dict | None:
    """The result with `user_id` named nowhere: their speakers' matches cleared (the speaker stays, unknown),
    their label dropped from every confidence map, identification and transcript segments given back the
    diarization speaker; anything else still equal to the id is cleared too."""
    if result is None:
        return None
    out = copy.deepcopy(result)
    speakers = matched_speakers(out, user_id)
    for m in out.get("voiceprints") or []:
        if m.get("match") == user_id:
            m["match"] = None
        if isinstance(m.get("confidence"), dict):
            m["confidence"].pop(user_id, None)
    for seg in out.get("identification") or []:
        if seg.get("match") == user_id:
            seg["match"] = None
        if seg.get("speaker") == user_id:
            seg["speaker"] = seg.get("diarizationSpeaker")
    for key in TRANSCRIPTS:
        for seg in out.get(key) or []:
            if seg.get("speaker") == user_id:
                seg["speaker"] = speakers[0] if len(speakers) == 1 else None
    return _scrub(out, user_id)


def _scrub(value: Any, user_id: str) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, user_id) for k, v in value.items() if k != user_id}
    if isinstance(value, list):
        return [_scrub(v, user_id) for v in value]
    return None if value == user_id else value


def redact_relabels(relabels: dict | None, user_id: str) -> dict | None:
    """Their claims undone: the speaker is unknown again, as after "Undo claim"."""
    if relabels is None:
        return None
    return {speaker: (None if who == user_id else who) for speaker, who in relabels.items()}


def result_labels(result: dict | None) -> set[str]:
    """Every voiceprint label a result holds (matches and the candidates of the confidence maps)."""
    labels = {m.get("match") for m in (result or {}).get("voiceprints") or []}
    labels |= {label for m in (result or {}).get("voiceprints") or [] for label in (m.get("confidence") or {})}
    labels |= {s.get("match") for s in (result or {}).get("identification") or []}
    return {label for label in labels if isinstance(label, str) and label}


# -- reading -------------------------------------------------------------------------------------------------

async def recordings_with_content(db: Database, team_id: str, batch: int = _BATCH) -> AsyncIterator[Recording]:
    """The workspace's recordings that still hold a result or relabels, a batch at a time (each is decrypted)."""
    last = 0
    while True:
        stmt = (select(Recording).where(Recording.team_id == team_id, Recording.id > last,
                                        or_(Recording.result.is_not(None), Recording.relabels.is_not(None)))
                .order_by(Recording.id).limit(batch))
        async with db.session() as s:
            rows = list((await s.exec(stmt)).all())
        for rec in rows:
            yield rec
        if len(rows) < batch:
            return
        last = rows[-1].id


async def stored_about(db: Database, team_id: str, user_id: str) -> dict[str, Any]:
    """Every row about the person apart from meeting results: voiceprints (without the voiceprint), enrollments
    not answered yet, recordings they shared, how often they deleted, their last "Identify again", whether they
    installed the app, the "Is this you?" questions about them, and the audit rows naming them (as actor,
    target, or the person a claim was about)."""
    voiceprints, jobs = await enrollment_of(db, team_id, user_id)
    async with db.session() as s:
        shared = (await s.exec(select(Recording).where(Recording.team_id == team_id, Recording.uploader_id == user_id)
                               .order_by(Recording.created_at))).all()
        generation = (await s.exec(select(DeletionGeneration).where(DeletionGeneration.team_id == team_id,
                                                                    DeletionGeneration.user_id == user_id))).first()
        press = (await s.exec(select(ReidentifyPress.pressed_at).where(ReidentifyPress.team_id == team_id,
                                                                       ReidentifyPress.user_id == user_id))).first()
        questions = (await s.exec(select(NearMatch).where(NearMatch.team_id == team_id, NearMatch.user_id == user_id)
                                  .order_by(NearMatch.id))).all()
        installs = (await s.exec(select(Workspace.installed_at).where(Workspace.team_id == team_id,
                                                                      Workspace.installer_user_id == user_id))).all()
        events = (await s.exec(select(AuditEvent).where(
            AuditEvent.team_id == team_id,
            or_(AuditEvent.actor_id == user_id, AuditEvent.target_id == user_id,
                AuditEvent.action.in_((AuditAction.claim, AuditAction.unclaim))))  # a claim's detail names them
            .order_by(AuditEvent.created_at, AuditEvent.id))).all()
    return {"voiceprints": voiceprints, "enrollment_jobs": jobs, "shared": list(shared),
            "deletions": generation.generation if generation else 0, "identify_again_pressed_at": press,
            "installed_at": list(installs), "questions": list(questions), "audit": [e for e in events if about(e, user_id)]}


async def enrollment_of(db: Database, team_id: str, user_id: str) -> tuple[list[Voiceprint], list[EnrollmentJob]]:
    """The person's voiceprints (every engine's, the voiceprint itself included: callers show only the rest)
    and their enrollments not answered yet, oldest first."""
    async with db.session() as s:
        voiceprints = (await s.exec(select(Voiceprint).where(Voiceprint.team_id == team_id,
                                                             Voiceprint.user_id == user_id)
                                    .order_by(Voiceprint.created_at))).all()
        jobs = (await s.exec(select(EnrollmentJob).where(EnrollmentJob.team_id == team_id,
                                                         EnrollmentJob.user_id == user_id)
                             .order_by(EnrollmentJob.created_at))).all()
    return list(voiceprints), list(jobs)


def about(event: AuditEvent, user_id: str) -> bool:
    """An audit row names the person: they acted, it targets them, or a claim was made for or about them."""
    return user_id in (event.actor_id, event.target_id) or holds(event.detail, user_id)


# -- changing ------------------------------------------------------------------------------------------------

async def redact_recording(db: Database, recording_id: int, user_id: str) -> Recording | None:
    """Takes `user_id` out of one recording's result and relabels on the locked row, raising `relabel_seq` so
    its chart is redrawn; None when the row no longer names them (or is gone). Idempotent."""

    async def attempt() -> Recording | None:
        async with db.session(immediate=True) as s:
            rec = (await s.exec(select(Recording).where(Recording.id == recording_id).with_for_update())).first()
            if rec is None or not (holds(rec.result, user_id) or holds(rec.relabels, user_id)):
                return None
            rec.result, rec.relabels = redact(rec.result, user_id), redact_relabels(rec.relabels, user_id)
            rec.relabel_seq += 1
            rec.updated_at = utcnow()
            await s.commit()
            return rec

    return await retry_locked(db, attempt)


async def forget_presses(db: Database, team_id: str, user_id: str) -> int:
    """Their "Identify again" cooldown row (when they last pressed it), and every "Is this you?" question
    about them (pending ones are dropped; an answer to one already sent is told it is gone)."""
    stmt = delete(ReidentifyPress).where(ReidentifyPress.team_id == team_id, ReidentifyPress.user_id == user_id)
    questions = delete(NearMatch).where(NearMatch.team_id == team_id, NearMatch.user_id == user_id)

    async def attempt() -> int:
        async with db.session(immediate=True) as s:
            n = (await s.exec(stmt)).rowcount
            await s.exec(questions)
            await s.commit()
            return n

    return await retry_locked(db, attempt)


async def record_erasure(db: Database, team_id: str, user_id: str, actor_id: str | None, detail: dict) -> None:
    """The erasure's audit row (who asked, through which way, what went): kept `AUDIT_RETENTION_DAYS`."""
    await audit.record(db, team_id=team_id, actor_id=actor_id, action=AuditAction.erase, target_type="person",
                       target_id=user_id, detail=detail)


async def withheld(s, team_id: str, result: dict | None, since: datetime) -> dict | None:
    """Inside a transaction storing a new result: the result without the people who deleted their voiceprints
    at or after `since` (when the job was queued, before it read any voiceprint), so a job that sent a
    voiceprint to the engine before its deletion never stores a name the delete already took out. Someone who
    deleted and enrolled again in that window is left out of this one result too (the cautious side)."""
    labels = result_labels(result)
    if not labels:
        return result
    stmt = select(DeletionGeneration.user_id).where(
        DeletionGeneration.team_id == team_id, DeletionGeneration.user_id.in_(sorted(labels)),
        DeletionGeneration.generation > 0, DeletionGeneration.updated_at >= since)
    for user_id in (await s.exec(stmt)).all():
        result = redact(result, user_id)
    return result
