"""The enrollment queue: a submitted `/enroll` is a job row that workers claim with the lease machinery of
`storage.leases`, so a restart mid-enrollment is taken over and still ends with the person's answer.

    queued ──claim──▶ running ──finish──▶ (row deleted: the person has their answer)
      ▲                  │
      └──fail(retry) / lease expired / release

A job claimed more than `max_attempts` times is not run again: its worker answers "not enrolled" and
finishes it. Once the outcome is known its message is stored (`answer`) before it is sent, so a send that
fails is retried as a send only. `/enroll delete` deletes the person's queued jobs (its reply is their answer); running ones are
stopped by the deletion generation check at save. The row holds no biometric data (a Slack file id only).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import select

from storage.database import Database
from storage.leases import claim, due, execute, lease_until, retry_delay, retry_locked, update_owned
from storage.models import EnrollmentJob, EnrollmentStatus, utcnow

QUEUED, RUNNING = EnrollmentStatus.queued.value, EnrollmentStatus.running.value


async def enqueue_enrollment(db: Database, *, team_id: str, user_id: str, file_id: str, consent_at: datetime,
                             generation: int, view_id: str | None, owner: str | None = None,
                             lease_seconds: float = 0, consent_text: str | None = None) -> EnrollmentJob:
    """Stores a submitted enrollment; with `owner` it is stored already claimed by that worker (one attempt)."""
    now = utcnow()
    job = EnrollmentJob(team_id=team_id, user_id=user_id, file_id=file_id, consent_at=consent_at,
                        consent_text=consent_text, generation=generation, view_id=view_id, created_at=now,
                        updated_at=now)
    if owner:
        job.status, job.attempts = EnrollmentStatus.running, 1
        job.lease_owner, job.lease_expires_at = owner, lease_until(lease_seconds)

    async def attempt() -> EnrollmentJob:
        async with db.session() as s:
            s.add(job)
            await s.commit()
            await s.refresh(job)
            return job

    return await retry_locked(db, attempt)


async def claim_enrollment(db: Database, owner: str, lease_seconds: float) -> EnrollmentJob | None:
    """The oldest queued enrollment past its backoff → `running` under `owner`'s lease (an attempt counted)."""
    now = utcnow()
    claimable = (EnrollmentJob.status == QUEUED) & due(EnrollmentJob, now)
    pick = select(EnrollmentJob.id).where(claimable).order_by(EnrollmentJob.created_at, EnrollmentJob.id).limit(1)
    if db.dialect == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    return await claim(db, EnrollmentJob, pick.scalar_subquery(), claimable, {
        "status": RUNNING, "attempts": EnrollmentJob.attempts + 1, "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=lease_seconds), "updated_at": now})


async def renew_enrollment(db: Database, job_id: int, owner: str, lease_seconds: float) -> bool:
    """Extends the lease; False means `owner` lost the job (taken over, or cancelled by a delete)."""
    return await update_owned(db, EnrollmentJob, job_id, owner, (RUNNING,),
                              {"lease_expires_at": lease_until(lease_seconds)})


async def retry_enrollment(db: Database, job: EnrollmentJob, owner: str, code: str, message: str, *,
                           backoff: tuple[float, float]) -> bool:
    """Gives a failed attempt back to the queue, claimable after the backoff; False if the lease was lost."""
    not_before = utcnow() + timedelta(seconds=retry_delay(job.attempts, *backoff))
    return await update_owned(db, EnrollmentJob, job.id, owner, (RUNNING,), {
        "status": QUEUED, "lease_owner": None, "lease_expires_at": None, "not_before": not_before,
        "error_code": code[:64], "error_message": message})


async def keep_answer(db: Database, job_id: int, owner: str, answer: str) -> bool:
    """Stores the outcome's message before it is sent; False if the lease was lost."""
    return await update_owned(db, EnrollmentJob, job_id, owner, (RUNNING,), {"answer": answer})


async def finish_enrollment(db: Database, job_id: int, owner: str) -> bool:
    """The person has their answer: the job row goes (False if another worker holds it now)."""
    stmt = delete(EnrollmentJob).where(EnrollmentJob.id == job_id, EnrollmentJob.lease_owner == owner)
    return await execute(db, [stmt]) > 0


async def cancel_queued_enrollments(db: Database, team_id: str, user_id: str) -> int:
    """`/enroll delete`: the person's enrollments that no worker has started are dropped; returns how many."""
    stmt = delete(EnrollmentJob).where(EnrollmentJob.team_id == team_id, EnrollmentJob.user_id == user_id,
                                       EnrollmentJob.status == QUEUED)
    return await execute(db, [stmt])


async def requeue_expired_enrollments(db: Database, *, now: datetime | None = None) -> int:
    """A crashed worker's enrollment goes back to the queue (a claim past `max_attempts` answers instead)."""
    now = now or utcnow()
    stmt = (update(EnrollmentJob)
            .where(EnrollmentJob.status == RUNNING, EnrollmentJob.lease_owner.is_not(None),
                   EnrollmentJob.lease_expires_at < now)
            .values(status=QUEUED, lease_owner=None, lease_expires_at=None, updated_at=now,
                    error_code="lease_expired", error_message="The worker stopped responding."))
    return await execute(db, [stmt])


async def release_enrollments(db: Database, owner: str) -> int:
    """A worker stopping in order gives its enrollments back at once (the attempt still counts)."""
    stmt = (update(EnrollmentJob).where(EnrollmentJob.lease_owner == owner, EnrollmentJob.status == RUNNING)
            .values(status=QUEUED, lease_owner=None, lease_expires_at=None, updated_at=utcnow()))
    return await execute(db, [stmt])


async def enrollment_jobs(db: Database, team_id: str | None = None) -> list[EnrollmentJob]:
    stmt = select(EnrollmentJob).order_by(EnrollmentJob.id)
    if team_id is not None:
        stmt = stmt.where(EnrollmentJob.team_id == team_id)
    async with db.session() as s:
        return list((await s.exec(stmt)).all())
