""""This is me" / "Undo claim" / "Not me": corrections shown to everyone, the summary updated in place and the
chart redrawn.

"This is me" is a claim, shown as "claimed by" and reversible by the claimant and the recording's uploader;
it never makes or changes a voiceprint (only a person's own clip through `/enroll` does). "Not me" is for
the person a voiceprint match named, and only them. Each of them only while they are members of the
recording's channel (`bot.services.access`), except "Not me" in the person's own Home (see `correct`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.pools import CpuPool, TaskSet
from bot.services.access import Outsider, require_member
from bot.services.charts import redraw_chart
from bot.services.context import Services, SlackPort
from bot.services.summaries import refresh_summary
from bot.summary.stats import summary_of
from bot.text import mention

if TYPE_CHECKING:
    from storage.models import Recording

CLAIMED = ("Thanks: this speaker is now shown to everyone as *claimed by you*; you or the person who shared the "
           "recording can undo it. A claim never teaches Voice ID your voice: to be recognised in future "
           "recordings, type `/enroll` with a short clip of your own voice.")
NOT_ME_DONE = "Thanks: that speaker is now shown as unknown for everyone."
UNDONE = "The claim is undone: that speaker is shown as unknown again for everyone."
GONE = "This summary is no longer available (results expire)."
NOT_NAMED_YOU = "No voiceprint named you in this recording, so there is nothing for you to correct."


def not_me_refusal(rec: Recording, speaker: str, user: str) -> str | None:
    """Only the person a voiceprint named may say the speaker is not them."""
    stats = summary_of(rec).by_speaker(speaker)
    if stats is None or stats.user_id is None:
        return "No voiceprint named this speaker, so there is nothing to correct."
    if stats.user_id != user:
        return f"Only {mention(stats.user_id)} can say that this speaker is not them."
    return None


def own_not_me_refusal(rec: Recording, speaker: str, user: str) -> str | None:
    """"Not me" in the person's own Home: as `not_me_refusal`, but the refusal names nobody. Home asks no
    channel membership, and a button's value can be made to point at any recording of the workspace: the
    answer must not tell who a voiceprint named there."""
    return NOT_NAMED_YOU if not_me_refusal(rec, speaker, user) is not None else None


def claim_refusal(rec: Recording, speaker: str, user: str) -> str | None:
    """Why `user` may not claim this speaker, or None when they may."""
    summary = summary_of(rec)
    stats = summary.by_speaker(speaker)
    if stats is None:
        return "This speaker is not in the summary."
    if stats.user_id is not None:
        return f"This speaker is already named {mention(stats.user_id)}."
    if stats.claimed_by is not None:
        return f"This speaker is already claimed by {mention(stats.claimed_by)}."
    if any(user in (s.user_id, s.claimed_by) for s in summary.speakers):
        return ("You are already named as (or claimed) another speaker in this recording. "
                "Undo that first if it is wrong.")
    return None


def undo_refusal(rec: Recording, speaker: str, user: str) -> str | None:
    """Only the claimant and the recording's uploader may undo a claim."""
    stats = summary_of(rec).by_speaker(speaker)
    if stats is None or stats.claimed_by is None:
        return "Nobody has claimed this speaker."
    if user in (stats.claimed_by, rec.uploader_id):
        return None
    uploader = f" or {mention(rec.uploader_id)}, who shared the recording," if rec.uploader_id else ""
    return f"Only {mention(stats.claimed_by)}{uploader} can undo this claim."


def rerun_refusal(rec: Recording) -> str | None:
    """While "Identify again" runs, the result being corrected is about to be replaced."""
    from storage.models import RecordingStatus

    if rec.posted_ts and rec.state in (RecordingStatus.queued, RecordingStatus.running):
        return "This recording is being identified again; try again once the summary is updated."
    return None


Refusal = Callable[[Any, str, str], str | None]  # (recording, speaker, clicker) → why not, or None


async def correct(services: Services, slack: SlackPort, *, rec_id: int, speaker: str, team_id: str | None,
                  clicker: str, user_id: str | None, refusal: Refusal, done: str, cpu: CpuPool, background: TaskSet,
                  members_only: bool = True) -> str:
    """Apply a correction (`user_id` as the speaker's claimant, or None for unknown) if the clicker is a member
    of the recording's channel and `refusal` allows it on the locked row; returns the private answer for them.
    The chart is redrawn (in `cpu`) among the caller's `background` tasks, after the answer.
    `members_only=False` is for "Not me" in the person's own Home (`bot.slack.home`): a voiceprint named them,
    so saying it was not them stays their right after they left the channel (as `/enroll delete` takes their
    name out of every channel's results), and `own_not_me_refusal` still lets nobody else press it. The
    refusal is asked before the re-run check, so a refused press learns nothing of the recording."""
    from storage.recordings import get_recording
    from storage.thread import RelabelRefused, set_relabel

    rec = await get_recording(services.db, rec_id)
    if rec is None or (team_id and rec.team_id != team_id):
        return GONE
    try:
        if members_only:
            await require_member(slack, rec, clicker)
    except Outsider as exc:
        return exc.reason
    if rec.result is None:
        return GONE
    try:
        rec = await set_relabel(services.db, rec.id, speaker, user_id, actor_id=clicker,
                                check=lambda locked: refusal(locked, speaker, clicker) or rerun_refusal(locked))
    except RelabelRefused as exc:
        return exc.reason
    await refresh_summary(services, slack, rec)
    background.spawn(redraw_chart(services, cpu, slack, rec.id), name=f"chart {rec.id}")
    return done
