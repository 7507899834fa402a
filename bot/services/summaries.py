"""The summary message of a stored recording — its result read through corrections, with its "Transcript"
line — as the job posts it and as corrections update it in place."""
from __future__ import annotations

from typing import TYPE_CHECKING

from bot.services.context import SlackPort
from bot.summary.blocks import SlackMessage, render_summary
from bot.summary.stats import summary_of
from bot.summary.status import transcript_line

if TYPE_CHECKING:
    from storage.models import Recording


def transcript_pending(rec: Recording, transcript_on: bool) -> bool:
    """The transcript is still to come: wanted, and neither posted nor given up, before the job ends."""
    from storage.models import RecordingStatus

    return (transcript_on and rec.state is RecordingStatus.succeeded and rec.transcript_file_id is None
            and rec.transcript_error is None)


def summary_message(rec: Recording, *, transcript_on: bool, progress: float | None = None,
                    note: str | None = None) -> SlackMessage:
    """The summary from the stored result and relabels, with its "Transcript" line (link, note or progress)."""
    line = None
    if rec.transcript_url or rec.transcript_error or transcript_pending(rec, transcript_on):
        line = transcript_line(rec.file_name, url=rec.transcript_url, error=rec.transcript_error, progress=progress)
    return render_summary(summary_of(rec), file_name=rec.file_name, recording_id=rec.id, transcript=line, note=note,
                          provenance=(rec.result or {}).get("provenance"), hint=(rec.result or {}).get("speakerHint"))


async def refresh_summary(slack: SlackPort, rec: Recording, *, transcript_on: bool = True) -> None:
    """Re-render the posted summary from the stored result and relabels, in place."""
    msg = summary_message(rec, transcript_on=transcript_on)
    ts = rec.posted_ts or rec.reply_ts
    if ts:
        await slack.update(rec.channel_id, ts, msg)
