"""The short messages around a job: the progress reply, and a failure explained with what to do next."""
from __future__ import annotations

from bot.errors import advice_for
from bot.failures import public_reason
from bot.summary.blocks import MAX_TEXT, SlackMessage, clip, context, section
from bot.text import escape

BAR_CELLS = 12


def progress_bar(progress: float) -> str:
    p = min(max(progress, 0.0), 1.0)
    full = round(p * BAR_CELLS)
    return "▓" * full + "░" * (BAR_CELLS - full) + f" {p:.0%}"


def render_progress(file_name: str, progress: float | None = None) -> SlackMessage:
    text = f"Identifying speakers in {escape(file_name)}…"
    body = text if progress is None else f"{text}\n`{progress_bar(progress)}`"
    return SlackMessage(text=clip(text, MAX_TEXT), blocks=[section(body)])


def render_failure(file_name: str, code: str, message: str, *, ref: str) -> SlackMessage:
    """The reason when the person can fix it, else a generic sentence with `ref` (the log has the details)."""
    advice = advice_for(code)
    text = f"Could not identify speakers in {escape(file_name)}: {escape(public_reason(code, message, ref))}"
    return SlackMessage(text=clip(text, MAX_TEXT), blocks=[section(f":warning: {text}"), context(advice)])


def identify_again_failed(code: str, message: str, *, ref: str) -> str:
    """The summary's note when "Identify again" failed: the summary above is the earlier one (mrkdwn)."""
    return (f":warning: *Identify again* did not work: {escape(public_reason(code, message, ref))} "
            f"The summary above is still the earlier one. {advice_for(code)}")


TRANSCRIPT_INTERRUPTED = "interrupted"  # the transcript's `error` when a takeover found the upload begun


def transcript_name(file_name: str, suffix: str) -> str:
    """`<recording>-transcript.md` (and `.vtt`): the recording's name without its extension."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name.lstrip(".") else file_name
    return f"{stem or 'recording'}-transcript.{suffix}"


def transcript_line(file_name: str, *, url: str | None = None, error: str | None = None,
                    progress: float | None = None) -> str:
    """The summary's short "Transcript" line: a link to the file, a note when it failed, or its progress."""
    if url:
        label = escape(transcript_name(file_name, "md")).replace("|", "¦")
        return f"*Transcript:* <{url}|{label}> (the `.vtt` beside it is for players)"
    if error == TRANSCRIPT_INTERRUPTED:
        return ("*Transcript:* its upload was interrupted, and it is never sent twice: if no transcript file is "
                "in this thread, it could not be made this time.")
    if error:
        return f"*Transcript:* could not be made this time (ref {escape(error)}); the summary above is complete."
    bar = f" `{progress_bar(progress)}`" if progress is not None else ""
    return f"*Transcript:* transcribing…{bar}"
