"""What a recording's thread holds, as the database remembers it: the bot's one reply, the chart and the
transcript (each upload marked as begun under the lease, so it happens at most once), and the corrections
people made ("This is me" / "Not me"), audited."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import or_, update
from sqlmodel import select

from storage import audit
from storage.database import Database
from storage.leases import NO_SYNC as _NO_SYNC
from storage.leases import retry_locked as _retry_locked
from storage.models import AuditAction, Recording, RecordingStatus, utcnow
from storage.recordings import RecordingNotFound, update_recording, update_where

SUCCEEDED = RecordingStatus.succeeded.value


class RelabelRefused(Exception):
    """A correction that does not apply to the recording as it is now (e.g. someone claimed it first)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

async def start_chart(db: Database, recording_id: int, owner: str) -> bool:
    """Marks the chart upload as begun, under the lease and only once: False means do not upload."""
    return await update_where(db, recording_id, Recording.lease_owner == owner, Recording.status == SUCCEEDED,
                               Recording.chart_started_at.is_(None), chart_started_at=utcnow())

async def save_transcript(db: Database, recording_id: int, owner: str, result: dict) -> bool:
    """Stores the recognised words of `result` into the stored result (a takeover then skips recognition).
    Only the words are taken: the rest of `result` was read before recognition, and a person's data deleted
    meanwhile (`storage.retention.redact`) must not come back with it."""
    from storage.retention import TRANSCRIPTS

    words = {key: result[key] for key in TRANSCRIPTS if key in result}

    async def attempt() -> bool:
        async with db.session(immediate=True) as s:
            rec = (await s.exec(select(Recording).where(Recording.id == recording_id).with_for_update())).first()
            if rec is None or rec.lease_owner != owner or rec.state is not RecordingStatus.succeeded:
                return False
            rec.result = {**(rec.result or {}), **words}
            await s.commit()
            return True

    return await _retry_locked(db, attempt)


async def start_transcript(db: Database, recording_id: int, owner: str) -> bool:
    """Marks the transcript upload as begun, under the lease and only once: False means do not upload."""
    return await update_where(db, recording_id, Recording.lease_owner == owner, Recording.status == SUCCEEDED,
                               Recording.transcript_started_at.is_(None), transcript_started_at=utcnow())


async def end_transcript(db: Database, recording_id: int, owner: str, *, file_id: str | None = None,
                         url: str | None = None, error: str | None = None) -> bool:
    """How the transcript ended: its uploaded file (id, link), or an error ref shown instead of the link."""
    values = {"transcript_file_id": file_id, "transcript_url": url, "transcript_error": error}
    return await update_recording(db, recording_id, owner, (SUCCEEDED,), values)


async def lock_chart(db: Database, recording_id: int, owner: str, seconds: float) -> bool:
    """Takes the recording's chart-redraw lock (free or expired) for `seconds`; False: someone else redraws."""
    now = utcnow()
    return await update_where(
        db, recording_id, Recording.chart_file_id.is_not(None),
        or_(Recording.chart_lock_owner.is_(None), Recording.chart_lock_owner == owner,
            Recording.chart_lock_until < now),
        chart_lock_owner=owner, chart_lock_until=now + timedelta(seconds=seconds))


async def replace_chart(db: Database, recording_id: int, owner: str, file_id: str, seq: int) -> bool:
    """The chart drawn at relabel `seq` is in Slack now; False when `owner` lost the lock meanwhile."""
    return await update_where(db, recording_id, Recording.chart_lock_owner == owner, chart_file_id=file_id,
                               chart_seq=seq)


async def unlock_chart(db: Database, recording_id: int, owner: str, *, force: bool = False) -> bool:
    """Releases the lock only when the chart shows the latest relabel (else the holder draws again and
    returns False), so a correction made while the lock was held is never left undrawn."""
    current = () if force else (Recording.chart_seq == Recording.relabel_seq,)
    return await update_where(db, recording_id, Recording.chart_lock_owner == owner, *current,
                               chart_lock_owner=None, chart_lock_until=None)

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
            rec.relabel_seq += 1
            rec.updated_at = utcnow()
            await audit.record(s, team_id=rec.team_id, actor_id=actor_id or user_id,
                               action=AuditAction.claim if user_id else AuditAction.unclaim,
                               target_type="recording", target_id=str(rec.id),
                               detail={"speaker": speaker, "user_id": user_id})
            await s.commit()
            return rec

    return await _retry_locked(db, attempt)


async def set_reply_ts(db: Database, recording_id: int, reply_ts: str) -> str:
    """Remembers the bot's one threaded message, whatever the state (it is set before a worker claims).
    The first ts stored wins; returns the stored one, so a caller that lost the race removes its own."""
    first = (update(Recording).where(Recording.id == recording_id, Recording.reply_ts.is_(None))
             .values(reply_ts=reply_ts, updated_at=utcnow()).execution_options(**_NO_SYNC))

    async def attempt() -> str:
        async with db.session(immediate=True) as s:
            await s.exec(first)
            stored = (await s.exec(select(Recording.reply_ts).where(Recording.id == recording_id))).first()
            await s.commit()
            if stored is None:
                raise RecordingNotFound(recording_id)
            return stored

    return await _retry_locked(db, attempt)
