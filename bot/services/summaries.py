"""The summary message of a stored recording — its result read through corrections, with its "Transcript"
line — as the job posts it and as corrections update it in place."""
from __future__ import annotations

from typing import TYPE_CHECKING

from bot.services.context import SlackPort
from bot.summary.blocks import SlackMessage, render_summary
from bot.summary.stats import Summary, summary_of
from bot.summary.status import transcript_line

if TYPE_CHECKING:
    from bot.services.context import Services
    from storage.models import Recording, RecordingOutput


def transcript_pending(rec: Recording, transcript: RecordingOutput | None, transcript_on: bool) -> bool:
    """The transcript is still to come: wanted, and neither posted nor given up, before the job ends."""
    from storage.models import RecordingStatus

    return (transcript_on and rec.state is RecordingStatus.succeeded
            and (transcript is None or (transcript.file_id is None and transcript.error is None)))


def summary_message(rec: Recording, transcript: RecordingOutput | None = None, *, transcript_on: bool,
                    progress: float | None = None, note: str | None = None,
                    summary: Summary | None = None) -> SlackMessage:
    """The summary (`summary`, else read from the stored result and relabels) with its "Transcript" line (link,
    note or progress) from the transcript's record (None: nothing begun)."""
    url, error = (transcript.url, transcript.error) if transcript is not None else (None, None)
    line = None
    if url or error or transcript_pending(rec, transcript, transcript_on):
        line = transcript_line(rec.file_name, url=url, error=error, progress=progress)
    return render_summary(summary or summary_of(rec), file_name=rec.file_name, recording_id=rec.id,
                          transcript=line, note=note, provenance=(rec.result or {}).get("provenance"),
                          hint=(rec.result or {}).get("speakerHint"))


async def refresh_summary(services: Services, slack: SlackPort, rec: Recording) -> None:
    """Re-render the posted summary from the stored result and relabels, in place."""
    from storage.thread import TRANSCRIPT, get_output

    transcript = await get_output(services.db, rec.id, TRANSCRIPT)
    msg = summary_message(rec, transcript, transcript_on=services.settings.transcript)
    ts = rec.posted_ts or rec.reply_ts
    if ts:
        await slack.update(rec.channel_id, ts, msg)
