"""What a recording's thread holds, as the database remembers it: the bot's one reply, the chart and the
transcript (each upload marked as begun under the lease, so it happens at most once; one `RecordingOutput` row
each), the corrections people made ("This is me" / "Not me"), audited, the progress reply's intake, and the
"Is this you?" questions."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import and_, delete, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import select

from storage import audit
from storage.database import Database
from storage.leases import NO_SYNC as _NO_SYNC
from storage.leases import claim, execute
from storage.leases import retry_locked as _retry_locked
from storage.models import (
    AuditAction,
    NearMatch,
    NearMatchState,
    OutputKind,
    Recording,
    RecordingOutput,
    RecordingStatus,
    utcnow,
)
from storage.recordings import RecordingNotFound, update_where

ANNOUNCE_TRIES = 5  # then only the job's outcome is posted (it looks for a reply an earlier try left first)


class RelabelRefused(Exception):
    """A correction that does not apply to the recording as it is now (e.g. someone claimed it first)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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


# -- the thread's outputs besides the reply: the chart and the transcript (`RecordingOutput`) -------------------
# Each is read and written only here and by its one owner: the chart by `bot.jobs.chart_step` and
# `bot.services.charts`, the transcript by `bot.jobs.transcript_step` (the summary reads how it ended). Every write
# is one conditional statement; an upload's start is marked under the lease and only once, before the upload.

CHART, TRANSCRIPT = OutputKind.chart, OutputKind.transcript
_SUCCEEDED = (RecordingStatus.succeeded.value,)
_LEASED = (RecordingStatus.running.value, RecordingStatus.succeeded.value, RecordingStatus.failed.value)


async def get_output(db: Database, recording_id: int, kind: OutputKind) -> RecordingOutput:
    """The output's record; a blank one (nothing begun) when it has none yet."""
    async with db.session() as s:
        row = (await s.exec(select(RecordingOutput).where(RecordingOutput.recording_id == recording_id,
                                                          RecordingOutput.kind == kind.value))).first()
    return row or RecordingOutput(recording_id=recording_id, kind=kind)


async def posted_outputs(db: Database, recording_ids: Iterable[int], kind: OutputKind) -> list[RecordingOutput]:
    """The outputs of `kind` that reached Slack (a file id stored) among the recordings'."""
    ids = sorted(set(recording_ids))
    if not ids:
        return []
    async with db.session() as s:
        return list((await s.exec(select(RecordingOutput).where(
            RecordingOutput.recording_id.in_(ids), RecordingOutput.kind == kind.value,
            RecordingOutput.file_id.is_not(None)).order_by(RecordingOutput.recording_id))).all())


def _held(recording_id: int, owner: str, statuses: tuple[str, ...]) -> Any:
    """The recording's lease is `owner`'s, in one of `statuses`."""
    return sa.exists().where(Recording.id == recording_id, Recording.lease_owner == owner,
                             Recording.status.in_(statuses))


async def _applied(db: Database, stmt: Any) -> bool:
    async def attempt() -> bool:
        async with db.session(immediate=True) as s:
            changed = (await s.exec(stmt.execution_options(**_NO_SYNC))).first() is not None
            await s.commit()
            return changed

    return await _retry_locked(db, attempt)


async def _upsert(db: Database, recording_id: int, kind: OutputKind, held: Any, values: dict[str, Any],
                  only_if: Any = None) -> bool:
    """One statement: the output's row takes `values` (created if it has none yet) while `held` holds and, for a
    row already there, `only_if`; True when it applied."""
    now = utcnow()
    row = {"recording_id": recording_id, "kind": kind, "seq": 0, "created_at": now, "updated_at": now, **values}
    table = RecordingOutput.__table__
    source = sa.select(*(sa.literal(v, table.c[k].type).label(k) for k, v in row.items())).where(held)
    stmt = (sqlite_insert if db.dialect == "sqlite" else pg_insert)(table).from_select(list(row), source)
    stmt = stmt.on_conflict_do_update(index_elements=["recording_id", "kind"], where=only_if,
                                      set_={k: stmt.excluded[k] for k in (*values, "updated_at")})
    return await _applied(db, stmt.returning(table.c.id))


async def _update(db: Database, recording_id: int, kind: OutputKind, *conditions: Any, **values: Any) -> bool:
    """One conditional UPDATE of the output's row; True when it applied."""
    return await _applied(db, update(RecordingOutput).where(
        RecordingOutput.recording_id == recording_id, RecordingOutput.kind == kind.value, *conditions)
        .values(updated_at=utcnow(), **values).returning(RecordingOutput.id))


async def _start(db: Database, recording_id: int, kind: OutputKind, owner: str) -> bool:
    return await _upsert(db, recording_id, kind, _held(recording_id, owner, _SUCCEEDED), {"started_at": utcnow()},
                         only_if=RecordingOutput.started_at.is_(None))


async def start_chart(db: Database, recording_id: int, owner: str) -> bool:
    """Marks the chart upload as begun, under the lease of a `succeeded` recording and only once: False means do
    not upload."""
    return await _start(db, recording_id, CHART, owner)


async def start_transcript(db: Database, recording_id: int, owner: str) -> bool:
    """Marks the transcript upload as begun, under the lease and only once: False means do not upload."""
    return await _start(db, recording_id, TRANSCRIPT, owner)


async def end_transcript(db: Database, recording_id: int, owner: str, *, file_id: str | None = None,
                         url: str | None = None, error: str | None = None) -> bool:
    """How the transcript ended, under the lease: its uploaded file (id, link), or an error ref shown instead of
    the link."""
    return await _upsert(db, recording_id, TRANSCRIPT, _held(recording_id, owner, _SUCCEEDED),
                         {"file_id": file_id, "url": url, "error": error})


async def chart_posted(db: Database, recording_id: int, owner: str, file_id: str, seq: int) -> bool:
    """The first chart, drawn at relabel `seq`, is in Slack (stored under the lease, so a correction can redraw
    it); False when `owner` lost the lease."""
    return await _update(db, recording_id, CHART, _held(recording_id, owner, _LEASED),
                         file_id=file_id, seq=seq)


async def lock_chart(db: Database, recording_id: int, owner: str, seconds: float) -> bool:
    """Takes the chart-redraw lock (free or expired) for `seconds`; False: someone else redraws (or there is no
    chart)."""
    now = utcnow()
    return await _update(db, recording_id, CHART, RecordingOutput.file_id.is_not(None),
                         or_(RecordingOutput.lock_owner.is_(None), RecordingOutput.lock_owner == owner,
                             RecordingOutput.lock_until < now),
                         lock_owner=owner, lock_until=now + timedelta(seconds=seconds))


async def replace_chart(db: Database, recording_id: int, owner: str, file_id: str, seq: int) -> bool:
    """The chart drawn at relabel `seq` is in Slack now; False when `owner` lost the lock meanwhile."""
    return await _update(db, recording_id, CHART, RecordingOutput.lock_owner == owner, file_id=file_id, seq=seq)


async def unlock_chart(db: Database, recording_id: int, owner: str, *, force: bool = False) -> bool:
    """Releases the lock only when the chart shows the latest relabel (else the holder draws again and
    returns False), so a correction made while the lock was held is never left undrawn."""
    latest = select(Recording.relabel_seq).where(Recording.id == recording_id).scalar_subquery()
    current = () if force else (RecordingOutput.seq == latest,)
    return await _update(db, recording_id, CHART, RecordingOutput.lock_owner == owner, *current,
                         lock_owner=None, lock_until=None)


# -- intake: the progress reply of a stored recording ----------------------------------------------------------

def _unannounced(now, row=Recording):
    """Stored, not shown in its thread yet, tries left, and nobody posting it now (or their hold ran out)."""
    return and_(row.reply_ts.is_(None),
                row.status.in_((RecordingStatus.queued.value, RecordingStatus.running.value)),
                row.announce_tries < ANNOUNCE_TRIES,
                or_(row.announce_until.is_(None), row.announce_until < now))


async def claim_announcement(db: Database, hold_seconds: float) -> Recording | None:
    """The oldest recording whose progress reply is still to be posted, held for `hold_seconds` by the caller (a
    try counted), or None. A poster that crashes or fails leaves it to the next try once the hold runs out."""
    now = utcnow()
    pick = select(Recording.id).where(_unannounced(now)).order_by(Recording.created_at, Recording.id).limit(1)
    if db.dialect == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    return await claim(db, Recording, pick.scalar_subquery(), _unannounced(now), {
        "announce_tries": Recording.announce_tries + 1, "announce_until": now + timedelta(seconds=hold_seconds)})


async def mark_checked(db: Database, recording_id: int, file_name: str) -> bool:
    """Slack said the stored Slack Connect file is audio or video, and what it is called."""
    name = file_name if len(file_name) <= 500 else file_name[:499] + "…"
    return await update_where(db, recording_id, Recording.file_checked.is_(False), file_checked=True,
                               file_name=name)


async def drop_unchecked(db: Database, recording_id: int) -> bool:
    """Slack said the stored Slack Connect file is not a recording (or is gone): the row goes, unshown."""
    stmt = delete(Recording).where(Recording.id == recording_id, Recording.file_checked.is_(False))
    return await execute(db, [stmt]) > 0


# -- "Is this you?": questions to the person a speaker left unknown probably is -------------------------------

async def store_questions(db: Database, recording_id: int, owner: str, found: list[tuple[str, str]]
                          ) -> list[NearMatch] | None:
    """Under the recording's lease (None: lost): stores each (speaker, person) of `found` whose person was never
    asked about this recording (one question per person and recording, ever), and returns the questions not
    sent yet. The result is read again by a takeover, so the same questions come back, never new copies."""

    async def attempt() -> list[NearMatch] | None:
        async with db.session(immediate=True) as s:
            rec = (await s.exec(select(Recording).where(Recording.id == recording_id).with_for_update())).first()
            if rec is None or rec.lease_owner != owner:
                return None
            asked = set((await s.exec(select(NearMatch.user_id).where(NearMatch.recording_id == recording_id))).all())
            for speaker, user in found:
                if user not in asked:
                    s.add(NearMatch(recording_id=recording_id, team_id=rec.team_id, user_id=user, speaker=speaker))
                    asked.add(user)
            await s.commit()
            return list((await s.exec(select(NearMatch).where(
                NearMatch.recording_id == recording_id, NearMatch.state == NearMatchState.pending.value)
                .order_by(NearMatch.id))).all())

    return await _retry_locked(db, attempt)


async def start_question(db: Database, question_id: int, owner: str) -> bool:
    """Marks the question sent before its DM, under the recording's lease and only once: False means do not
    send (at most once, as the chart and transcript uploads)."""

    async def attempt() -> bool:
        async with db.session(immediate=True) as s:
            q = (await s.exec(select(NearMatch).where(NearMatch.id == question_id).with_for_update())).first()
            if q is None or q.state != NearMatchState.pending:
                return False
            rec = (await s.exec(select(Recording).where(Recording.id == q.recording_id))).first()
            if rec is None or rec.lease_owner != owner:
                return False
            q.state, q.sent_at = NearMatchState.sent, utcnow()
            await s.commit()
            return True

    return await _retry_locked(db, attempt)


async def settle_question(db: Database, question_id: int, state: NearMatchState, *, expect: NearMatchState,
                          user_id: str | None = None, **fields) -> NearMatch | None:
    """Moves a question from `expect` to `state` (for `user_id` only, when given), with `fields` (its DM's
    channel and ts); None when it is not in `expect` (answered already, or gone)."""

    async def attempt() -> NearMatch | None:
        async with db.session(immediate=True) as s:
            q = (await s.exec(select(NearMatch).where(NearMatch.id == question_id).with_for_update())).first()
            if q is None or q.state != expect or (user_id is not None and q.user_id != user_id):
                return None
            q.state = state
            if state in (NearMatchState.yes, NearMatchState.no):
                q.answered_at = utcnow()
            for key, value in fields.items():
                setattr(q, key, value)
            await s.commit()
            await s.refresh(q)
            return q

    return await _retry_locked(db, attempt)


async def get_question(db: Database, question_id: int) -> NearMatch | None:
    async with db.session() as s:
        return (await s.exec(select(NearMatch).where(NearMatch.id == question_id))).first()
