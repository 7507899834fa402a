"""What a person may read about a failure: the reason when they can fix it, else a generic sentence and a
reference id that the log carries next to the details (engine URLs, exception text stay in the log)."""
from __future__ import annotations

import logging
import re
import secrets

log = logging.getLogger(__name__)

# Problems with the media itself (or the channel's setup) that the person can act on; the message says which.
SHOWN_CODES = frozenset({
    "not_audio", "no_audio_track", "corrupt", "empty", "silent", "too_long", "too_short", "too_large",
    "multiple_speakers", "bad_media", "html_page", "no_voiceprints", "not_own_clip",
    "file_gone",
})
# Failures whose message Voice ID itself writes (no internals in it): shown with the ref.
OWN_WORDS = frozenset({"lease_expired"})
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s<>|]+", re.IGNORECASE)


def new_ref() -> str:
    """A short id to quote to whoever runs Voice ID, e.g. `7F3A9C`."""
    return secrets.token_hex(3).upper()


def public_reason(code: str, message: str, ref: str) -> str:
    """The sentence a channel or DM may show (raw text: escape it where it meets mrkdwn)."""
    if code in SHOWN_CODES:
        return _URL.sub("(link removed)", message)
    if code in OWN_WORDS and message:
        return f"{message.rstrip('.')} (ref {ref})."
    return f"something went wrong on our side (ref {ref})."


def reason_logged(code: str, message: str, *, about: str) -> str:
    """`public_reason` with a new ref, after logging the full details under that ref."""
    ref = new_ref()
    level = logging.INFO if code in SHOWN_CODES else logging.WARNING  # a bad clip is not our failure
    log.log(level, "%s: %s (%s) [ref %s]", about, code, message, ref)
    return public_reason(code, message, ref)
