"""The recording queue: enqueue Slack files once, and let several worker processes claim them safely.

Claiming is one conditional UPDATE of the oldest claimable row, so two workers can never take the same
recording: PostgreSQL picks the row with `FOR UPDATE SKIP LOCKED` (workers skip each other's rows instead
of waiting), SQLite runs the statement in an immediate write transaction (writers queue on the busy
timeout; a "database is locked" after the timeout is retried). A worker keeps its lease alive with
`heartbeat`; `requeue_expired` returns the work of crashed workers, `release` the work of a worker that
stops. See `storage.models` for the states.

Fairness: among claimable rows, the workspace with the fewest recordings in progress (leased) goes first,
then the one waiting longest (`queued_at`: when it was shared, or when "Identify again" sent it back); so one
workspace's backlog never starves the others, and a re-run never jumps ahead of recordings already waiting.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import aliased
from sqlmodel import select

from storage import audit
from storage.database import Database
from storage.leases import claim, due, execute, lease_until, retry_delay, update_if, update_owned
from storage.leases import retry_locked as _retry_locked
from storage.models import AuditAction, NearMatch, Recording, RecordingStatus, ReidentifyPress, utcnow

QUEUED, RUNNING, SUCCEEDED = RecordingStatus.queued.value, RecordingStatus.running.value, RecordingStatus.succeeded.value
POSTED, FAILED = RecordingStatus.posted.value, RecordingStatus.failed.value
LEASE_EXPIRED = "lease_expired"


class RecordingNotFound(LookupError):
    def __init__(self, recording_id: int):
        super().__init__(f"recording {recording_id} does not exist (it may have been purged)")
        self.recording_id = recording_id


def _required(**ids: str | None) -> None:
    missing = [name for name, value in ids.items() if not value]
    if missing:
        raise ValueError(f"cannot enqueue a recording without {', '.join(missing)}")


async def enqueue_recording(db: Database, *, team_id: str, channel_id: str, file_id: str, file_name: str,
                            uploader_id: str | None,
                            message_ts: str | None, thread_ts: str | None = None,
                            engine: str, checked: bool = True,
                            speakers: tuple[int, int] | None = None) -> tuple[Recording, bool]:
    """Queues a Slack file once per (team, file): a retried event returns the existing row and False.
    `checked=False`: a Slack Connect file whose type Slack has not told yet (`storage.thread.mark_checked`).
    `speakers`: how many people speak (low, high), as the sharing message said."""
    _required(team_id=team_id, channel_id=channel_id, file_id=file_id, engine=engine)
    name = file_name or file_id
    row = Recording(team_id=team_id, channel_id=channel_id, file_id=file_id,
                    file_name=name if len(name) <= 500 else name[:499] + "…",
                    uploader_id=uploader_id, message_ts=message_ts, thread_ts=thread_ts, engine=engine,
                    file_checked=checked)
    if speakers is not None:
        row.min_speakers, row.max_speakers, row.speakers_from = *speakers, "message"
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


def _claimable(now: datetime, row: Any = Recording) -> Any:
    """Needs work: queued (and past its retry backoff); succeeded but not posted; failed but the failure not
    shown yet (both unleased)."""
    unleased = row.lease_owner.is_(None)
    return or_(and_(row.status == QUEUED, due(row, now)), and_(row.status == SUCCEEDED, unleased),
               and_(row.status == FAILED, unleased, row.notified_at.is_(None)))


def _fair_pick(dialect: str, now: datetime) -> Any:
    """The id to claim next: the workspace with the fewest leased rows first, then the longest waiting."""
    cand, other = aliased(Recording, name="cand"), aliased(Recording, name="other")
    busy = (select(func.count()).select_from(other)
            .where(other.team_id == cand.team_id, other.lease_owner.is_not(None))
            .correlate(cand).scalar_subquery())
    pick = select(cand.id).where(_claimable(now, cand)).order_by(busy, cand.queued_at, cand.id).limit(1)
    if dialect == "postgresql":
        pick = pick.with_for_update(of=cand, skip_locked=True)
    return pick.scalar_subquery()


async def claim_next(db: Database, owner: str, lease_seconds: int) -> Recording | None:
    """Takes the next recording needing work (see the module's fairness rule), or None: `queued` → `running`
    (an attempt is counted), or a `succeeded` one whose summary is not posted yet, or a `failed` one whose
    failure is not shown yet (both keep their status). The caller holds the lease."""
    if not owner:
        raise ValueError("a worker needs a non-empty owner name to claim recordings")
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive (got {lease_seconds})")

    now = utcnow()
    was_queued = Recording.status == QUEUED
    return await claim(db, Recording, _fair_pick(db.dialect, now), _claimable(now), {
        "status": case((was_queued, RUNNING), else_=Recording.status),
        "attempts": case((was_queued, Recording.attempts + 1), else_=Recording.attempts),
        "lease_owner": owner, "lease_expires_at": now + timedelta(seconds=lease_seconds), "updated_at": now})


async def update_recording(db: Database, recording_id: int, owner: str, statuses: tuple[str, ...],
                        values: dict[str, Any]) -> bool:
    return await update_owned(db, Recording, recording_id, owner, statuses, values)


async def heartbeat(db: Database, recording_id: int, owner: str, lease_seconds: float, *,
                    progress: float | None = None, engine_job_id: str | None = None,
                    engine_deadline_at: datetime | None = None, reply_ts: str | None = None,
                    diarize_only: bool | None = None) -> bool:
    """Extends the lease, storing any step's result given; False means `owner` lost it: stop working on it."""
    values: dict[str, Any] = {"lease_expires_at": lease_until(lease_seconds)}
    if progress is not None:
        values["progress"] = min(1.0, max(0.0, float(progress)))
    steps = {"engine_job_id": engine_job_id, "engine_deadline_at": engine_deadline_at, "reply_ts": reply_ts,
             "diarize_only": diarize_only}
    values |= {name: value for name, value in steps.items() if value is not None}
    return await update_recording(db, recording_id, owner, (RUNNING, SUCCEEDED, FAILED), values)


async def update_where(db: Database, recording_id: int, *conditions: Any, **values: Any) -> bool:
    """One conditional UPDATE of a recording; True when it applied."""
    return await update_if(db, Recording, recording_id, *conditions, **values)


async def complete(db: Database, recording_id: int, owner: str, result: dict, duration: float | None) -> bool:
    """`running` → `succeeded` with the engine output; the worker keeps its lease to post the summary.
    A run after "Identify again" (the summary was posted before) replaces the old result: the relabels
    named speakers of that result, so they are cleared, and `relabel_seq` rises so the chart is redrawn.
    `finished_at` keeps the first run's time (retention counts from it). Nobody who deleted their voiceprint
    since the job was queued is named in it (`storage.retention.withheld`)."""
    from storage.retention import withheld

    async def attempt() -> bool:
        async with db.session(immediate=True) as s:
            rec = (await s.exec(select(Recording).where(Recording.id == recording_id).with_for_update())).first()
            if rec is None or rec.lease_owner != owner or rec.state is not RecordingStatus.running:
                return False
            now = utcnow()
            if rec.posted_ts is not None:
                rec.relabels = None
                rec.relabel_seq += 1
                # Unanswered "Is this you?" questions were about the old result's speakers; answers stay.
                await s.exec(delete(NearMatch).where(NearMatch.recording_id == rec.id,
                                                     NearMatch.state.not_in(("yes", "no"))))
            stored = await withheld(s, rec.team_id, result, rec.queued_at)
            rec.status, rec.result, rec.duration, rec.progress = RecordingStatus.succeeded, stored, duration, 1.0
            rec.error_code = rec.error_message = None
            rec.finished_at = rec.finished_at or now
            rec.updated_at = now
            await s.commit()
            return True

    return await _retry_locked(db, attempt)


class IdentifyRefused(Exception):
    """"Identify again" does not apply to the recording as it is now; `reason` is for the person."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class IdentifyTooSoon(IdentifyRefused):
    """"Identify again" is cooling down until `retry_at`: for the person who pressed (`per_person`), or for the
    recording (its last re-run ended too recently)."""

    def __init__(self, retry_at: datetime, *, per_person: bool):
        whose = "this person" if per_person else "this recording"
        super().__init__(f"Identify again is cooling down for {whose} until {retry_at:%H:%M} UTC.")
        self.retry_at, self.per_person = retry_at, per_person


PURGED = ("The results of this recording were deleted under the retention policy, so it can no longer be "
          "identified again.")


async def requeue_identify(db: Database, recording_id: int, *, actor_id: str,
                           recording_cooldown: timedelta = timedelta(0), person_cooldown: timedelta = timedelta(0),
                           now: datetime | None = None, speakers: int | None = None) -> Recording:
    """"Identify again": a finished recording whose result is still retained goes back to `queued` for a new
    attempt series, at the back of the queue (the summary's `reply_ts`/`posted_ts`, the chart and the transcript
    stay, so the summary is edited in place and nothing is posted twice). Not within `recording_cooldown` after
    its last re-run was shown, nor within `person_cooldown` after the presser's last accepted press in the
    workspace. Checked and changed in one transaction on the locked row, so two presses make one job and a
    refused press changes nothing. `speakers`: the number of speakers the presser set, which the re-run (and any
    later one) passes to the engine instead of the message's hint; None keeps the recording's hint. Audited. Raises IdentifyTooSoon, IdentifyRefused (purged, or already
    running) or RecordingNotFound."""

    async def attempt() -> Recording:
        at = now or utcnow()
        async with db.session(immediate=True) as s:
            rec = (await s.exec(select(Recording).where(Recording.id == recording_id).with_for_update())).first()
            if rec is None:
                raise RecordingNotFound(recording_id)
            if rec.result is None:
                raise IdentifyRefused(PURGED)
            shown = rec.state is RecordingStatus.posted or (rec.state is RecordingStatus.failed
                                                            and rec.notified_at is not None)
            if not shown or rec.posted_ts is None:
                raise IdentifyRefused("This recording is already being identified; the summary will be updated.")
            if rec.reidentified_at is not None and at < rec.notified_at + recording_cooldown:
                raise IdentifyTooSoon(rec.notified_at + recording_cooldown, per_person=False)
            if person_cooldown > timedelta(0):
                await _take_turn(s, db.dialect, rec.team_id, actor_id, at, person_cooldown)
            rec.status, rec.attempts, rec.progress, rec.not_before = RecordingStatus.queued, 0, 0.0, None
            rec.lease_owner = rec.lease_expires_at = rec.engine_job_id = rec.engine_deadline_at = None
            rec.error_code = rec.error_message = rec.notified_at = None
            rec.queued_at = rec.reidentified_at = rec.updated_at = at
            if speakers is not None:
                rec.min_speakers = rec.max_speakers = speakers
                rec.speakers_from = "identify_again"
            await audit.record(s, team_id=rec.team_id, actor_id=actor_id, action=AuditAction.reidentify,
                               target_type="recording", target_id=str(rec.id),
                               detail=None if speakers is None else {"speakers": speakers})
            await s.commit()
            return rec

    return await _retry_locked(db, attempt)


async def _take_turn(s: Any, dialect: str, team_id: str, user_id: str, at: datetime, cooldown: timedelta) -> None:
    """Records the person's press at `at` unless their last one was within `cooldown` (IdentifyTooSoon): one
    conditional upsert, so simultaneous presses by one person on different recordings let only one through."""
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    stmt = (insert(ReidentifyPress).values(team_id=team_id, user_id=user_id, pressed_at=at)
            .on_conflict_do_update(index_elements=["team_id", "user_id"], set_={"pressed_at": at},
                                   where=ReidentifyPress.pressed_at <= at - cooldown)
            .returning(ReidentifyPress.id))
    if (await s.exec(stmt)).scalar_one_or_none() is None:
        last = (await s.exec(select(ReidentifyPress.pressed_at).where(
            ReidentifyPress.team_id == team_id, ReidentifyPress.user_id == user_id))).one()
        raise IdentifyTooSoon(last + cooldown, per_person=True)


async def mark_posted(db: Database, recording_id: int, owner: str, posted_ts: str) -> bool:
    """`succeeded` → `posted`. The working state (lease, engine job, errors) is dropped: only the result stays."""
    values = {"status": POSTED, "posted_ts": posted_ts, "lease_owner": None, "lease_expires_at": None,
              "engine_job_id": None, "engine_deadline_at": None, "error_code": None, "error_message": None,
              "progress": 1.0, "notified_at": utcnow()}
    return await update_recording(db, recording_id, owner, (SUCCEEDED,), values)


async def mark_notified(db: Database, recording_id: int, owner: str) -> bool:
    """A `failed` recording's failure is shown (or cannot be): release it for good."""
    values = {"notified_at": utcnow(), "lease_owner": None, "lease_expires_at": None}
    return await update_recording(db, recording_id, owner, (FAILED,), values)


async def fail(db: Database, recording_id: int, owner: str, code: str, message: str, *, retry: bool,
               max_attempts: int, drop_engine_job: bool = False, backoff: tuple[float, float] = (0.0, 0.0)
               ) -> Recording:
    """Records an error. With `retry` and attempts left it goes back to `queued` (a failed post stays
    `succeeded` to be posted again, counting an attempt); otherwise it ends `failed`, and `owner` keeps
    the lease to show the failure (then `mark_notified`). The error is kept either way.
    `drop_engine_job` forgets the engine job (hung or failed), so the retry submits a new one. A queued retry
    waits `retry_delay(attempts, *backoff)` (base, cap in seconds) before it can be claimed.
    If `owner` no longer holds the lease nothing changes and the current row is returned."""

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
            if drop_engine_job:
                rec.engine_job_id = rec.engine_deadline_at = None
            if retry and rec.attempts < max_attempts:
                rec.status = RecordingStatus.succeeded if posting else RecordingStatus.queued
                rec.lease_owner = rec.lease_expires_at = None
                if not posting:
                    rec.not_before = now + timedelta(seconds=retry_delay(rec.attempts, *backoff))
            else:
                rec.status = RecordingStatus.failed
                rec.finished_at = rec.finished_at or now  # a failed re-run keeps the first run's time
            rec.error_code, rec.error_message = code[:64], message
            rec.updated_at = now
            await s.commit()
            return rec

    return await _retry_locked(db, attempt)


async def requeue_expired(db: Database, max_attempts: int, *, now: datetime | None = None) -> int:
    """Returns the work of crashed workers: expired `running` → `queued` (or `failed` with `lease_expired`
    once its attempts are used up); expired `succeeded` or `failed` → lease cleared, so any worker can post
    the summary or show the failure."""
    now = now or utcnow()
    expired = and_(Recording.lease_owner.is_not(None), Recording.lease_expires_at < now)
    message = "The worker processing this recording stopped responding before it finished."
    cleared = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
    statements = [
        update(Recording).where(expired, Recording.status == RUNNING, Recording.attempts < max_attempts)
        .values(status=QUEUED, error_code=LEASE_EXPIRED, error_message=message + " Trying again.", **cleared),
        update(Recording).where(expired, Recording.status == RUNNING, Recording.attempts >= max_attempts)
        .values(status=FAILED, error_code=LEASE_EXPIRED, finished_at=func.coalesce(Recording.finished_at, now),
                error_message=message + f" Gave up after {max_attempts} attempts.", **cleared),
        update(Recording).where(expired, Recording.status.in_((SUCCEEDED, FAILED))).values(**cleared),
    ]
    return await execute(db, statements)


async def release(db: Database, owner: str) -> int:
    """A worker stopping in order gives back everything it holds at once: `running` → `queued` (the attempt
    still counts, so a recording can never keep a deploy loop going; the engine job id is kept so the next
    worker resumes it), `succeeded`/`failed` rows just lose the lease. Returns the rows released."""
    now = utcnow()
    mine = Recording.lease_owner == owner
    cleared = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
    statements = [
        update(Recording).where(mine, Recording.status == RUNNING)
        .values(status=QUEUED, **cleared),
        update(Recording).where(mine, Recording.status.in_((SUCCEEDED, FAILED))).values(**cleared),
    ]
    return await execute(db, statements)


async def get_recording(db: Database, recording_id: int) -> Recording | None:
    async with db.session() as s:
        return await s.get(Recording, recording_id)


async def _find(s: Any, team_id: str, file_id: str) -> Recording | None:
    stmt = select(Recording).where(Recording.team_id == team_id, Recording.file_id == file_id)
    return (await s.exec(stmt)).first()


async def find_recording(db: Database, team_id: str, file_id: str) -> Recording | None:
    async with db.session() as s:
        return await _find(s, team_id, file_id)


async def recording_stats(db: Database) -> list[tuple[str, str, int, datetime | None]]:
    """(team, status, recordings, the earliest `queued_at` among them) for each team and status present: one
    aggregate query, read at each metrics scrape."""
    stmt = (select(Recording.team_id, Recording.status, func.count(), func.min(Recording.queued_at))
            .group_by(Recording.team_id, Recording.status))
    async with db.session() as s:
        rows = (await s.exec(stmt)).all()
    return [(team, RecordingStatus(status).value, n, first) for team, status, n, first in rows]


async def count_by_status(db: Database) -> dict[str, int]:
    """Recordings per status (every status present, zero included), for health checks and metrics."""
    async with db.session() as s:
        rows = (await s.exec(select(Recording.status, func.count()).group_by(Recording.status))).all()
    counts = {status.value: 0 for status in RecordingStatus}
    counts.update({RecordingStatus(status).value: n for status, n in rows})
    return counts
