"""Every failure code Voice ID knows, in one registry, and the typed errors that carry them.

The pyannoteAI schema reports a failed job as `{"error": {"code", "message"}}`; engines, jobs and messages
all speak in those codes. Whether a code is worth a retry, is a problem with the media, may be shown to the
person in its own words, and what the person can do about it are properties of the code, read from here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    """What one failure code means. `shown`: its message (written for people, about their own input) may be
    shown as it is; `own_words`: the message is Voice ID's own sentence, shown with a ref; otherwise the person
    reads "something went wrong on our side" and a ref."""

    media: bool = False  # the input itself is unusable (a `MediaError`)
    transient: bool = False  # another attempt may succeed (rate limits, outages, a lost or failed engine job)
    shown: bool = False
    own_words: bool = False
    advice: str | None = None


_MEDIA = Code(media=True, shown=True)
CODES: dict[str, Code] = {
    "not_audio": Code(media=True, shown=True, advice="Share an audio or video file (m4a, mp3, wav, webm, mp4, mov…)."),
    "no_audio_track": _MEDIA,
    "corrupt": Code(media=True, shown=True,
                    advice="The file could not be decoded. Export it again and share the new file."),
    "empty": Code(media=True, shown=True, advice="The file holds no audio. Check the recording and share it again."),
    "silent": Code(media=True, shown=True, advice="No speech was found. Check that the microphone was on."),
    "too_long": Code(media=True, shown=True, advice="Share a shorter recording or split it into parts."),
    "too_short": Code(media=True, shown=True, advice="Share a longer recording."),
    "multiple_speakers": _MEDIA,
    "bad_media": _MEDIA,
    "not_found": Code(media=True),
    "too_large": Code(shown=True, advice="Share a smaller file (compress the audio or split the recording)."),
    "html_page": Code(shown=True,
                      advice="Make sure the bot can read files in this channel (reinstall the app if needed)."),
    "download_failed": Code(advice="Share the file again in a moment."),
    "not_in_slack": Code(shown=True, advice="Upload the recording into Slack itself, then share it."),
    "no_voiceprints": Code(shown=True, advice="Ask the people in this channel to enroll with `/enroll`, then share "
                                              "the recording again."),
    "not_own_clip": Code(shown=True),
    "file_gone": Code(shown=True, advice="Voice ID keeps no copy of recordings: share the recording again to have "
                                         "it identified."),
    "lease_expired": Code(own_words=True),
    "engine_unavailable": Code(transient=True),
    "rate_limited": Code(transient=True),
    "job_not_found": Code(transient=True),
    "internal": Code(transient=True),
    "timeout": Code(transient=True),
}
UNKNOWN = Code()
DEFAULT_ADVICE = "Try again later; if it keeps failing, tell whoever runs Voice ID and quote the ref."


def code_info(code: str) -> Code:
    return CODES.get(code, UNKNOWN)


def advice_for(code: str) -> str:
    return code_info(code).advice or DEFAULT_ADVICE


class EngineError(Exception):
    """An error with a stable `code` and a message fit to show a person.

    `transient` errors (rate limits, outages) are worth retrying; the others are final for that input. Unless
    the caller says otherwise, that is the registry's word on the code.
    """

    code = "engine_error"

    def __init__(self, message: str, *, code: str | None = None, transient: bool | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.transient = code_info(self.code).transient if transient is None else transient

    def to_output(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class MediaError(EngineError):
    """The input itself is unusable: not audio, corrupt, empty, silent, too long, too short, two voices."""

    code = "bad_media"


class VoiceprintError(EngineError):
    """A voiceprint is malformed or was made by another engine or model."""

    code = "incompatible_voiceprint"


class RequestError(EngineError):
    """The request failed validation (HTTP 400); `errors` lists `{field, message}`."""

    code = "invalid_request"

    def __init__(self, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.errors = errors or []


class AuthError(EngineError):
    code = "unauthorized"


class PaymentRequired(EngineError):
    code = "payment_required"


class RateLimited(EngineError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class EngineUnavailable(EngineError):
    code = "engine_unavailable"


class JobNotFound(EngineError):
    """The engine does not know the job (expired, or lost with an engine restart): resubmit it."""

    code = "job_not_found"


class EngineJobEnded(EngineError):
    """The engine job itself failed or missed its deadline: a retry must submit a new one."""


def error_from(code: str | None, message: str | None, *, job_ended: bool = False) -> EngineError:
    """The typed error for a failed job's `{code, message}` (the one place a code becomes an exception);
    `job_ended` marks the engine job as over, so a retry submits a new one."""
    code = code or "engine_error"
    message = message or "The speaker engine could not process it."
    if job_ended:
        return EngineJobEnded(message, code=code)
    if code == VoiceprintError.code:
        return VoiceprintError(message)
    return (MediaError if code_info(code).media else EngineError)(message, code=code)


class SlackCallError(Exception):
    """A Slack Web API call failed, as the services see it through their Slack port
    (`bot.services.context.SlackPort`, implemented by `bot.slack_api.web_api`): Slack's `error` code and the
    HTTP status, without slack_sdk."""

    def __init__(self, error: str | None, status: int):
        super().__init__(f"Slack answered {error} (HTTP {status})")
        self.error = error
        self.status = status

    @property
    def transient(self) -> bool:
        """Slack is rate limiting or failing: worth another attempt later."""
        return self.error == "ratelimited" or self.status >= 500
