"""The recording queue: enqueue Slack files once, and let several worker processes claim them safely.

Claiming is one conditional UPDATE of the oldest claimable row, so two workers can never take the same
recording: PostgreSQL picks the row with `FOR UPDATE SKIP LOCKED` (workers skip each other's rows instead
of waiting), SQLite runs the statement in an immediate write transaction (writers queue on the busy
timeout; a "database is locked" after the timeout is retried). A worker keeps its lease alive with
`heartbeat`; `requeue_expired` returns the work of crashed workers. See `storage.models` for the states.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, case, func, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from storage import audit
from storage.database import Database
from storage.models import AuditAction, Recording, RecordingStatus, utcnow

T = TypeVar("T")
_LOCK_RETRIES = 5
_NO_SYNC = {"synchronize_session": False}
QUEUED, RUNNING, SUCCEEDED = RecordingStatus.queued.value, RecordingStatus.running.value, RecordingStatus.succeeded.value
POSTED, FAILED = RecordingStatus.posted.value, RecordingStatus.failed.value
LEASE_EXPIRED = "lease_expired"


class RelabelRefused(Exception):
    """A correction that does not apply to the recording as it is now (e.g. someone claimed it first)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RecordingNotFound(LookupError):
    def __init__(self, recording_id: int):
        super().__init__(f"recording {recording_id} does not exist (it may have been purged)")
        self.recording_id = recording_id


async def _retry_locked(db: Database, attempt: Callable[[], Awaitable[T]]) -> T:
    """Runs `attempt`, retrying when SQLite stayed locked past its busy timeout (a lost race, not an error)."""
    for n in range(_LOCK_RETRIES):
        try:
            return await attempt()
        except OperationalError as exc:
            if db.dialect != "sqlite" or "locked" not in str(exc) or n == _LOCK_RETRIES - 1:
                raise
            await asyncio.sleep(0.05 * (n + 1))
    raise AssertionError("unreachable")


def _required(**ids: str | None) -> None:
    missing = [name for name, value in ids.items() if not value]
    if missing:
        raise ValueError(f"cannot enqueue a recording without {', '.join(missing)}")


async def enqueue_recording(db: Database, *, team_id: str, channel_id: str, file_id: str, file_name: str,
                            mimetype: str | None, size: int | None, uploader_id: str | None,
                            message_ts: str | None, thread_ts: str | None = None,
                            engine: str) -> tuple[Recording, bool]:
    """Queues a Slack file once per (team, file): a retried event returns the existing row and False."""
    _required(team_id=team_id, channel_id=channel_id, file_id=file_id, engine=engine)
    if size is not None and size < 0:
        raise ValueError(f"file size must not be negative (got {size})")
    name = file_name or file_id
    row = Recording(team_id=team_id, channel_id=channel_id, file_id=file_id,
                    file_name=name if len(name) <= 500 else name[:499] + "…", mimetype=mimetype, size=size,
                    uploader_id=uploader_id, message_ts=message_ts, thread_ts=thread_ts, engine=engine)
    values = row.model_dump(exclude={"id"})
    insert = sqlite_insert if db.dialect == "sqlite" else pg_insert
    stmt = (insert(Recording).values(**values)
            .on_conflict_do_nothing(index_elements=["team_id", "file_id"]).returning(Recording.id))

    async def attempt() -> tuple[Recording, bool]:
        async with db.session() as s:
            new_id = (await s.exec(stmt)).scalar_one_or_none()
            rec = await s.get_one(Recording, new_id) if new_id is not None else await _find(s, team_id, file_id)
            await s.commit()
            if rec is None:
                raise RuntimeError(f"recording {team_id}/{file_id} conflicted on insert but cannot be read")
            return rec, new_id is not None

    return await _retry_locked(db, attempt)


def _claimable() -> Any:
    return or_(Recording.status == QUEUED, and_(Recording.status == SUCCEEDED, Recording.lease_owner.is_(None)))


async def claim_next(db: Database, owner: str, lease_seconds: int) -> Recording | None:
    """Takes the oldest recording needing work, or None: `queued` → `running` (an attempt is counted), or a
    `succeeded` one whose summary is not posted yet (stays `succeeded`). The caller holds the lease."""
    if not owner:
        raise ValueError("a worker needs a non-empty owner name to claim recordings")
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive (got {lease_seconds})")

    async def attempt() -> Recording | None:
        now = utcnow()
        pick = select(Recording.id).where(_claimable()).order_by(Recording.created_at, Recording.id).limit(1)
        if db.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        was_queued = Recording.status == QUEUED
        stmt = (update(Recording)
                .where(Recording.id == pick.scalar_subquery(), _claimable())
                .values(status=case((was_queued, RUNNING), else_=Recording.status),
                        attempts=case((was_queued, Recording.attempts + 1), else_=Recording.attempts),
                        lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds),
                        updated_at=now)
                .returning(Recording)
                .execution_options(**_NO_SYNC))
        async with db.session(immediate=True) as s:
            claimed = (await s.exec(stmt)).scalars().first()
            await s.commit()
            return claimed

    return await _retry_locked(db, attempt)


async def _update_owned(db: Database, recording_id: int, owner: str, statuses: tuple[str, ...],
                        values: dict[str, Any]) -> bool:
    """One conditional UPDATE that only applies while `owner` holds the lease in one of `statuses`."""
    stmt = (update(Recording)
            .where(Recording.id == recording_id, Recording.lease_owner == owner, Recording.status.in_(statuses))
            .values(updated_at=utcnow(), **values)
            .returning(Recording.id)
            .execution_options(**_NO_SYNC))

    async def attempt() -> bool:
        async with db.session() as s:
            changed = (await s.exec(stmt)).first() is not None
            await s.commit()
            return changed

    return await _retry_locked(db, attempt)


async def heartbeat(db: Database, recording_id: int, owner: str, lease_seconds: int, *,
                    progress: float | None = None, engine_job_id: str | None = None,
                    reply_ts: str | None = None) -> bool:
    """Extends the lease; False means `owner` lost it (expired and re-queued): stop working on it."""
    values: dict[str, Any] = {"lease_expires_at": utcnow() + timedelta(seconds=lease_seconds)}
    if progress is not None:
        values["progress"] = min(1.0, max(0.0, float(progress)))
    if engine_job_id is not None:
        values["engine_job_id"] = engine_job_id
    if reply_ts is not None:
        values["reply_ts"] = reply_ts
    return await _update_owned(db, recording_id, owner, (RUNNING, SUCCEEDED), values)


async def complete(db: Database, recording_id: int, owner: str, result: dict, duration: float | None) -> bool:
    """`running` → `succeeded` with the identify output; the worker keeps its lease to post the summary."""
    values = {"status": SUCCEEDED, "result": result, "duration": duration, "progress": 1.0,
              "error_code": None, "error_message": None, "finished_at": utcnow()}
    return await _update_owned(db, recording_id, owner, (RUNNING,), values)


async def mark_posted(db: Database, recording_id: int, owner: str, posted_ts: str,
                      chart_file_id: str | None = None) -> bool:
    """`succeeded` → `posted`. The working state (lease, engine job, errors) is dropped: only the result stays."""
    values = {"status": POSTED, "posted_ts": posted_ts, "chart_file_id": chart_file_id, "lease_owner": None,
              "lease_expires_at": None, "engine_job_id": None, "error_code": None, "error_message": None,
              "progress": 1.0}
    return await _update_owned(db, recording_id, owner, (SUCCEEDED,), values)


async def fail(db: Database, recording_id: int, owner: str, code: str, message: str, *, retry: bool,
               max_attempts: int) -> Recording:
    """Records an error. With `retry` and attempts left it goes back to `queued` (a failed post stays
    `succeeded` to be posted again, counting an attempt); otherwise it ends `failed`. The error is kept
    either way. If `owner` no longer holds the lease nothing changes and the current row is returned."""

    async def attempt() -> Recording:
        async with db.session(immediate=True) as s:
            rec = (await s.exec(select(Recording).where(Recording.id == recording_id).with_for_update())).first()
            if rec is None:
                raise RecordingNotFound(recording_id)
            if rec.lease_owner != owner or rec.status not in (RecordingStatus.running, RecordingStatus.succeeded):
                return rec
            now = utcnow()
            posting = rec.status == RecordingStatus.succeeded
            if posting:
                rec.attempts += 1
            if retry and rec.attempts < max_attempts:
                rec.status = RecordingStatus.succeeded if posting else RecordingStatus.queued
            else:
                rec.status = RecordingStatus.failed
                rec.finished_at = now
            rec.error_code, rec.error_message = code[:64], message
            rec.lease_owner = rec.lease_expires_at = None
            rec.updated_at = now
            await s.commit()
            return rec

    return await _retry_locked(db, attempt)


async def requeue_expired(db: Database, max_attempts: int, *, now: datetime | None = None) -> int:
    """Returns the work of crashed workers: expired `running` → `queued` (or `failed` with `lease_expired`
    once its attempts are used up); expired `succeeded` → lease cleared, so any worker can post it."""
    now = now or utcnow()
    expired = and_(Recording.lease_owner.is_not(None), Recording.lease_expires_at < now)
    message = "The worker processing this recording stopped responding before it finished."
    cleared = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
    statements = [
        update(Recording).where(expired, Recording.status == RUNNING, Recording.attempts < max_attempts)
        .values(status=QUEUED, error_code=LEASE_EXPIRED, error_message=message + " Trying again.", **cleared),
        update(Recording).where(expired, Recording.status == RUNNING, Recording.attempts >= max_attempts)
        .values(status=FAILED, error_code=LEASE_EXPIRED, finished_at=now,
                error_message=message + f" Gave up after {max_attempts} attempts.", **cleared),
        update(Recording).where(expired, Recording.status == SUCCEEDED).values(**cleared),
    ]

    async def attempt() -> int:
        async with db.session(immediate=True) as s:
            total = 0
            for stmt in statements:
                total += (await s.exec(stmt.execution_options(**_NO_SYNC))).rowcount
            await s.commit()
            return total

    return await _retry_locked(db, attempt)


async def get_recording(db: Database, recording_id: int) -> Recording | None:
    async with db.session() as s:
        return await s.get(Recording, recording_id)


async def _find(s: Any, team_id: str, file_id: str) -> Recording | None:
    stmt = select(Recording).where(Recording.team_id == team_id, Recording.file_id == file_id)
    return (await s.exec(stmt)).first()


async def find_recording(db: Database, team_id: str, file_id: str) -> Recording | None:
    async with db.session() as s:
        return await _find(s, team_id, file_id)


async def queue_position(db: Database, recording_id: int) -> int | None:
    """How many queued recordings are ahead of this one (0 = next), or None when it is not queued."""
    async with db.session() as s:
        rec = await s.get(Recording, recording_id)
        if rec is None or rec.status != RecordingStatus.queued:
            return None
        ahead = select(func.count()).select_from(Recording).where(
            Recording.status == QUEUED,
            or_(Recording.created_at < rec.created_at,
                and_(Recording.created_at == rec.created_at, Recording.id < rec.id)))
        return (await s.exec(ahead)).one()


async def count_by_status(db: Database) -> dict[str, int]:
    """Recordings per status (every status present, zero included), for health checks and metrics."""
    async with db.session() as s:
        rows = (await s.exec(select(Recording.status, func.count()).group_by(Recording.status))).all()
    counts = {status.value: 0 for status in RecordingStatus}
    counts.update({RecordingStatus(status).value: n for status, n in rows})
    return counts


def diarized_speakers(result: dict | None) -> set[str]:
    """The diarization labels (SPEAKER_00, …) present in an identify output."""
    if not result:
        return set()
    labels = {seg.get("speaker") for seg in result.get("diarization") or []}
    labels |= {seg.get("diarizationSpeaker") for seg in result.get("identification") or []}
    labels |= {m.get("speaker") for m in result.get("voiceprints") or []}
    return {label for label in labels if label}


async def set_relabel(db: Database, recording_id: int, speaker: str, user_id: str | None, *,
                      actor_id: str | None = None,
                      check: Callable[[Recording], str | None] | None = None) -> Recording:
    """Records a correction of a diarized speaker and audits it: `user_id` claims it ("This is me": the
    clicker's own id, so the stored id is the claimant); None makes it unknown ("Not me", or a claim undone).
    `check` sees the locked row and returns why the correction is refused (raised as RelabelRefused), so two
    people clicking at once cannot both win.

    Raises RecordingNotFound, or ValueError when there is no result or no such speaker in it."""

    async def attempt() -> Recording:
        async with db.session(immediate=True) as s:
            rec = (await s.exec(select(Recording).where(Recording.id == recording_id).with_for_update())).first()
            if rec is None:
                raise RecordingNotFound(recording_id)
            if not rec.result:
                raise ValueError("this recording has no result to correct: it is not finished yet, "
                                 "or its result was deleted by the retention policy")
            known = diarized_speakers(rec.result)
            if speaker not in known:
                raise ValueError(f"there is no speaker {speaker!r} in this recording "
                                 f"(speakers: {', '.join(sorted(known)) or 'none'})")
            reason = check(rec) if check is not None else None
            if reason:
                raise RelabelRefused(reason)
            rec.relabels = {**(rec.relabels or {}), speaker: user_id}
            rec.updated_at = utcnow()
            await audit.record(s, team_id=rec.team_id, actor_id=actor_id or user_id,
                               action=AuditAction.claim if user_id else AuditAction.unclaim,
                               target_type="recording", target_id=str(rec.id),
                               detail={"speaker": speaker, "user_id": user_id})
            await s.commit()
            return rec

    return await _retry_locked(db, attempt)


async def set_reply_ts(db: Database, recording_id: int, reply_ts: str) -> None:
    """Remembers the bot's threaded progress message, whatever the state (it is set before a worker claims)."""
    stmt = (update(Recording).where(Recording.id == recording_id).values(reply_ts=reply_ts, updated_at=utcnow())
            .returning(Recording.id).execution_options(**_NO_SYNC))

    async def attempt() -> bool:
        async with db.session() as s:
            found = (await s.exec(stmt)).first() is not None
            await s.commit()
            return found

    if not await _retry_locked(db, attempt):
        raise RecordingNotFound(recording_id)
