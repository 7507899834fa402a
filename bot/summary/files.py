"""What a Slack file object is, from its metadata alone (pure): audio or video, small enough, stored in Slack.
Listeners, services and the download (`bot.slack_api.files`) refuse what cannot be a recording or a clip with
these checks before anything is fetched."""
from __future__ import annotations

from bot.errors import MediaError

MEDIA_PREFIXES = ("audio/", "video/")
# Some clients label audio as a generic type; the file type (extension) decides then.
MEDIA_FILETYPES = {"m4a", "mp3", "wav", "webm", "mp4", "mov", "ogg", "oga", "opus", "flac", "aac", "mkv", "m4v",
                   "mpga", "wma", "aiff", "aif", "amr", "3gp"}


def is_media(file: dict) -> bool:
    """Audio or video, judged from the file object Slack sends (mimetype, else file type)."""
    mimetype = (file.get("mimetype") or "").lower()
    if mimetype.startswith(MEDIA_PREFIXES):
        return True
    return mimetype in ("", "application/octet-stream") and (file.get("filetype") or "").lower() in MEDIA_FILETYPES


def describe(file: dict) -> str:
    return file.get("pretty_type") or file.get("filetype") or file.get("mimetype") or "unknown type"


def check_media(file: dict, *, max_bytes: int) -> None:
    """Refuse what its metadata already shows cannot be a usable clip or recording: not audio or video, too large.
    A modal's file input gives no download URL yet, so this is all a submitted clip can be checked for."""
    name = file.get("name") or "the file"
    if not is_media(file):
        raise MediaError(f"{name} is a {describe(file)} file, not audio or video.", code="not_audio")
    size = int(file.get("size") or 0)
    if size > max_bytes:
        raise MediaError(f"{name} is {size / 1e6:.0f} MB; the limit is {max_bytes / 1e6:.0f} MB.", code="too_large")


def check_file(file: dict, *, max_bytes: int) -> None:
    """Refuse what cannot be a usable recording before spending a download on it."""
    check_media(file, max_bytes=max_bytes)
    if file.get("mode") == "external" or not (file.get("url_private_download") or file.get("url_private")):
        raise MediaError(f"{file.get('name') or 'the file'} is not stored in Slack (an external link), so it cannot "
                         "be read.", code="not_audio")
