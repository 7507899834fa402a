"""Data-protection requests about one person: what Voice ID stores about them (`export_person`, never the
voiceprint itself) and deleting it (`erase_person`), for the person themself (`/enroll delete`), for a workspace
admin acting for them (`/enroll delete @person`) and for the operator (`python -m bot people …`).

One erasure for every way in: their voice goes first through the `/enroll delete` path (`delete_voice`: every
engine's voiceprint, enrollments not finished, the deletion generation raised so none in flight can save),
then their name leaves every stored result (matches, confidence maps, claims: `storage.retention.redact`; the
speaker stays as "Unknown speaker N"), their "Identify again" cooldown row goes, one `erase` audit row records
it, and the summaries already posted are edited in place through the summary update path, their charts redrawn.
Engines keep no voiceprints of their own: ours hold one only for the job it came with, pyannoteAI is sent the
voiceprint with each job and keeps it under its own terms (see README, Privacy).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from bot.config import EngineKind
from bot.engines.factory import engine_name
from bot.errors import SlackCallError
from bot.failures import new_ref
from bot.pools import CpuPool
from bot.schema import utcnow
from bot.services.charts import redraw_chart
from bot.services.context import LocalRunner, Services, SlackPort
from bot.services.enrollment import VoiceDeleted, delete_voice
from bot.services.summaries import refresh_summary
from bot.summary.blocks import SlackMessage
from bot.summary.enroll_views import retention_text
from bot.summary.stats import summary_of
from bot.text import mention
from storage.models import Recording

log = logging.getLogger(__name__)

# What deleting a voiceprint means on each engine's side (the voiceprint is also sent to the engine with each job).
ENGINE_COPIES = {
    EngineKind.local: "The embedded engine keeps no voiceprint: it holds one in memory only for the job it came with.",
    EngineKind.server: "Voice ID's engine server keeps no voiceprint: it holds one in memory only for the job it "
                       "came with, and never writes one to disk.",
    EngineKind.pyannoteai: "pyannoteAI received the voiceprint with each identify job and made it from the "
                           "enrollment clip; it keeps and deletes those under its own terms and retention, which "
                           "Voice ID cannot change: ask pyannoteAI for deletion there.",
}
NOT_INCLUDED = ("The voiceprint itself is never exported: it is biometric data that only the engine can use. "
                "Meeting results whose retention ended are deleted and cannot be shown.")
NO_CONSENT_TEXT = "(not stored: enrolled before Voice ID kept the consent text)"
ADMIN_ONLY = ("Only workspace admins and owners can delete someone else's Voice ID data, so nothing was changed. "
              "`/enroll delete` on its own deletes yours.")
CANNOT_CHECK = "Voice ID could not ask Slack whether you are a workspace admin (ref {ref}), so nothing was changed."


@dataclass
class Erasure:
    """What one erasure took, for the answer, the DM, the command line and the audit row."""

    voice: VoiceDeleted
    results: list = field(default_factory=list)  # the recordings whose stored result or claims named them
    presses: int = 0
    shown: int = 0  # summaries edited in place in Slack
    not_shown: list = field(default_factory=list)  # (recording, why) posted summaries Slack did not let us edit
    # The redacted recordings' transcript files posted before the erasure (`RecordingOutput`), which may show their
    # name: Slack files cannot be edited.
    transcripts: list = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.voice.voiceprints or self.voice.enrollments or self.results or self.presses)


    def detail(self, via: str) -> dict:
        return {"via": via, "voiceprints": self.voice.voiceprints, "enrollments_cancelled": self.voice.enrollments,
                "results_redacted": len(self.results), "recordings": [rec.id for rec in self.results],
                "identify_again_rows": self.presses}


async def erase_person(services: Services, slack: SlackPort | None, team_id: str, user_id: str, *,
                       actor_id: str | None, via: str, cpu: CpuPool, runner: LocalRunner | None,
                       voice: VoiceDeleted | None = None) -> Erasure:
    """Deletes what Voice ID keeps about the person (see the module); `voice` when their voice is already
    deleted (`/enroll delete` answers that part first), else `runner` (this process's, if any) cancels their
    enrollments running here. Without `slack` nothing in Slack is edited; charts are redrawn in `cpu`."""
    from storage.retention import (
        forget_presses,
        holds,
        record_erasure,
        recordings_with_content,
        redact_recording,
    )
    from storage.thread import TRANSCRIPT, posted_outputs

    voice = voice or await delete_voice(services, runner, team_id, user_id, actor_id)
    erasure = Erasure(voice=voice)
    async for rec in recordings_with_content(services.db, team_id):
        if not (holds(rec.result, user_id) or holds(rec.relabels, user_id)):
            continue
        redacted = await redact_recording(services.db, rec.id, user_id)  # checked again on the locked row
        if redacted is not None:
            erasure.results.append(redacted)
    erasure.transcripts = await posted_outputs(services.db, [rec.id for rec in erasure.results], TRANSCRIPT)
    erasure.presses = await forget_presses(services.db, team_id, user_id)
    if erasure.results:
        await services.db.checkpoint()  # the -wal file still holds the results' pages with their name
    await record_erasure(services.db, team_id, user_id, actor_id, erasure.detail(via))
    log.info("erased %s/%s (%s): %s", team_id, user_id, via, erasure.detail(via))
    for rec in erasure.results:
        if rec.posted_ts is None:
            continue  # its job is still posting it, and edits it from the stored result (SECURITY.md, limits)
        if slack is None:
            erasure.not_shown.append((rec, "no Slack client"))
            continue
        why = await show_redacted(services, cpu, slack, rec)
        if why is None:
            erasure.shown += 1
        else:
            erasure.not_shown.append((rec, why))
    return erasure


async def show_redacted(services: Services, cpu: CpuPool, slack: SlackPort, rec: Recording) -> str | None:
    """The posted summary edited in place and its chart redrawn without the person; why not, or None."""
    try:
        await refresh_summary(services, slack, rec)
    except SlackCallError as exc:
        error = exc.error or "error"
        log.warning("recording %s: summary not updated after an erasure: %s", rec.id, error)
        return error
    try:
        await redraw_chart(services, cpu, slack, rec.id)
    except Exception as exc:  # the summary no longer names them; a chart that could not be redrawn is logged
        ref = new_ref()
        log.warning("recording %s: chart not redrawn after an erasure [ref %s]", rec.id, ref,
                    exc_info=not isinstance(exc, SlackCallError))
        return f"chart not redrawn (ref {ref})"
    return None


# -- who may act for someone else --------------------------------------------------------------------------------

async def admin_refusal(slack: SlackPort, team_id: str, user_id: str) -> str | None:
    """Why `user_id` may not delete someone else's data, or None: only a workspace admin or owner of this
    workspace, as Slack's `users.info` says at this moment (never remembered). Fails closed."""
    try:
        user = await slack.user_info(user_id)
    except SlackCallError as exc:
        ref = new_ref()
        log.warning("users.info for %s failed: %s [ref %s]", user_id, exc.error, ref)
        return CANNOT_CHECK.format(ref=ref)
    teams = {user.get("team_id"), *((user.get("enterprise_user") or {}).get("teams") or [])}
    if user.get("deleted") or team_id not in teams or not (user.get("is_admin") or user.get("is_owner")):
        log.warning("%s asked to delete someone else's data in %s and is no workspace admin: refused", user_id,
                    team_id)
        return ADMIN_ONLY
    return None


# -- what people are told ----------------------------------------------------------------------------------------

def _results(erasure: Erasure, *, shown: bool = True) -> str:
    n = len(erasure.results)
    text = f"{n} meeting result{'' if n == 1 else 's'} Voice ID kept"
    if shown and erasure.shown:
        text += f" ({erasure.shown} summar{'y' if erasure.shown == 1 else 'ies'} updated in Slack)"
    return text


def _caveats(erasure: Erasure, whose: str) -> str:
    out = ""
    if erasure.not_shown:
        n = len(erasure.not_shown)
        out += (f"\n{n} posted summar{'y' if n == 1 else 'ies'} could not be edited in Slack (deleted, or Voice ID "
                f"left the channel); the results Voice ID keeps no longer name {whose}.")
    if erasure.transcripts:
        n = len(erasure.transcripts)
        out += (f"\n{n} transcript file{'' if n == 1 else 's'} posted earlier may still show {whose} name: Slack "
                "files cannot be edited, so delete them in Slack if needed.")
    return out


def self_erased_text(erasure: Erasure) -> str | None:
    """The follow-up to `/enroll delete` when their name was in stored results (nothing to say otherwise)."""
    if not erasure.results:
        return None
    return f"Your name is also taken out of {_results(erasure)}.{_caveats(erasure, 'your')}"


def admin_erased_text(erasure: Erasure, user_id: str, notified: str | None) -> str:
    who = mention(user_id)
    if not erasure.anything:
        return f"Voice ID kept no voiceprint of {who} and no stored result names them: nothing to delete."
    parts = []
    if erasure.voice.voiceprints:
        parts.append("their voiceprint is deleted")
    if erasure.voice.enrollments:
        parts.append("the enrollment they had started is cancelled")
    if erasure.results:
        parts.append(f"their name is taken out of {_results(erasure)}")
    told = " They were told by direct message." if notified is None else (
        f" They could not be told by direct message (Slack said `{notified}`).")
    done = "; ".join(parts) or "their remaining data is deleted"
    return f"Done for {who}: {done}.{told}{_caveats(erasure, 'their')}"


async def notify_erased(slack: SlackPort, user_id: str, actor_id: str | None, erasure: Erasure) -> str | None:
    """The person learns that someone else deleted their data (their right to know): an admin (`actor_id`) or
    whoever runs Voice ID (None, the command line). Slack's error when the DM could not be sent (a deactivated
    account), else None."""
    who = f"A workspace admin, {mention(actor_id)}," if actor_id else "Whoever runs Voice ID for this workspace"
    what = [part for part, present in (
        ("your voiceprint", erasure.voice.voiceprints), ("the enrollment you had started", erasure.voice.enrollments),
        (f"your name in {_results(erasure, shown=False)}", erasure.results),
        ("when you last used Identify again", erasure.presses)) if present]
    text = (f"{who} deleted the data Voice ID kept about you in this workspace: {', '.join(what)}. Voice ID will "
            "not name you in recordings from now on. Only you can enroll your voice again, with `/enroll`.")
    try:
        await slack.post(user_id, SlackMessage(text=text, blocks=[]))
    except SlackCallError as exc:
        error = exc.error or "error"
        log.warning("could not tell %s about the erasure: %s", user_id, error)
        return error
    return None


# -- the export --------------------------------------------------------------------------------------------------

def _when(value) -> str | None:
    return value.isoformat() if value is not None else None


async def export_person(db, team_id: str, user_id: str, *, result_days: int, audit_days: int) -> dict[str, Any]:
    """Everything Voice ID stores about the person, as JSON with readable field names."""
    from storage.retention import recordings_with_content, stored_about

    rows = await stored_about(db, team_id, user_id)
    named = [entry async for rec in recordings_with_content(db, team_id)
             if (entry := recording_entry(rec, user_id, result_days)) is not None]
    return {
        "workspace": team_id, "person": user_id, "exported_at": _when(utcnow()), "not_included": NOT_INCLUDED,
        "voiceprints": [voiceprint_entry(vp) for vp in rows["voiceprints"]],
        "enrollments_not_finished": [{
            "submitted_at": _when(job.created_at), "consent_given_at": _when(job.consent_at),
            "consent_text": job.consent_text, "state": str(getattr(job.status, "value", job.status)),
            "slack_file_id_of_the_clip": job.file_id} for job in rows["enrollment_jobs"]],
        "times_voiceprints_deleted": rows["deletions"],
        "recordings_naming_them": named,
        "recordings_they_shared": [{
            "recording_id": rec.id, "channel_id": rec.channel_id, "file_name": rec.file_name,
            "shared_at": _when(rec.created_at), "state": str(getattr(rec.status, "value", rec.status))}
            for rec in rows["shared"]],
        "identify_again_last_pressed_at": _when(rows["identify_again_pressed_at"]),
        "is_this_you_questions": [{
            "recording_id": q.recording_id, "speaker": q.speaker, "state": str(getattr(q.state, "value", q.state)),
            "asked_at": _when(q.sent_at), "answered_at": _when(q.answered_at)} for q in rows["questions"]],
        "installed_voice_id_at": [_when(at) for at in rows["installed_at"]],
        "audit_log": [{
            "at": _when(e.created_at), "action": str(getattr(e.action, "value", e.action)), "by": e.actor_id,
            "about": f"{e.target_type} {e.target_id}" if e.target_id else e.target_type, "details": e.detail}
            for e in rows["audit"]],
        "retention": {"meeting_results_days": result_days, "audit_log_days": audit_days,
                      "summary": retention_text(result_days, audit_days)},
    }


def voiceprint_entry(vp) -> dict:
    """One voiceprint as the person may see it (the export and their Home): everything but the voiceprint."""
    return {
        "name": vp.name, "engine": engine_name(vp.engine), "model": vp.model_id, "enrolled_at": _when(vp.created_at),
        "last_replaced_at": _when(vp.updated_at), "consent_given_at": _when(vp.consent_at),
        "consent_text": vp.consent_text or NO_CONSENT_TEXT, "clip_length_seconds": round(vp.clip_duration, 1)}


def recording_entry(rec: Recording, user_id: str, result_days: int) -> dict | None:
    """How one stored result names the person (matched by voiceprint, claimed, or compared only), or None."""
    from datetime import timedelta

    from storage.retention import claimed_speakers, holds, matched_speakers

    matched, claimed = matched_speakers(rec.result, user_id), claimed_speakers(rec.relabels, user_id)
    if not (matched or claimed or holds(rec.result, user_id) or holds(rec.relabels, user_id)):
        return None  # (`holds` walks every word of a transcript: asked only when nothing names them directly)
    summary = summary_of(rec)
    talk = {s.speaker: round(s.talk_time, 1) for s in summary.speakers}
    confidence = {m.get("speaker"): (m.get("confidence") or {}).get(user_id)
                  for m in (rec.result or {}).get("voiceprints") or []}
    relabels = rec.relabels or {}
    return {
        "recording_id": rec.id, "channel_id": rec.channel_id, "file_name": rec.file_name,
        "shared_at": _when(rec.created_at), "first_processed_at": _when(rec.finished_at),
        "result_deleted_after": _when(rec.finished_at + timedelta(days=result_days)) if rec.finished_at else None,
        "identified_by_voiceprint": [{
            "speaker": sp, "confidence": confidence.get(sp), "talk_time_seconds": talk.get(sp),
            "they_said_not_me": sp in relabels and relabels[sp] is None}
            for sp in matched],
        "claimed_with_this_is_me": [{"speaker": sp, "talk_time_seconds": talk.get(sp)} for sp in claimed],
        "voiceprint_compared": any(user_id in (m.get("confidence") or {})
                                   for m in (rec.result or {}).get("voiceprints") or []),
    }


# -- the person's own log (their App Home) -----------------------------------------------------------------------

HOME_RECORDINGS = 20  # the latest recordings naming them that their Home lists (it says how many there are)


@dataclass
class PersonLog:
    """What the person's Home shows them: their voiceprints and enrollments not answered yet (as the export
    has them) and the recordings whose stored result names them (`recording_entry`): the latest `limit`,
    newest first, and how many there are in all."""

    voiceprints: list[dict]
    enrolling: list[dict]
    recordings: list[dict]
    named_in: int


async def person_log(db, team_id: str, user_id: str, *, result_days: int, limit: int = HOME_RECORDINGS
                     ) -> PersonLog:
    """The person's own log, read the way the export reads it, at a lower cost per result, since a Home is
    opened far more often than an export is made: small batches (each result is decrypted on the event loop),
    a result is looked at only where matches and claims are (never every word of its transcript), and only the
    listed ones are summarised."""
    from collections import deque

    from storage.retention import claimed_speakers, enrollment_of, matched_speakers, recordings_with_content

    voiceprints, jobs = await enrollment_of(db, team_id, user_id)
    latest: deque = deque(maxlen=limit)
    named_in = 0
    async for rec in recordings_with_content(db, team_id, batch=10):
        if matched_speakers(rec.result, user_id) or claimed_speakers(rec.relabels, user_id):
            named_in += 1
            latest.append(rec)
    return PersonLog(voiceprints=[voiceprint_entry(vp) for vp in voiceprints],
                     enrolling=[{"submitted_at": _when(job.created_at)} for job in jobs],
                     recordings=[recording_entry(rec, user_id, result_days) for rec in reversed(latest)],
                     named_in=named_in)
