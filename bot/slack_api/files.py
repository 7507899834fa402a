"""Fetching a shared file from Slack: checked before (type, size) and while (HTML page, size) downloading.

The bytes go to a temporary file only; callers delete it when the job is over.
"""
from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import aiohttp

from bot.errors import EngineUnavailable, MediaError

CHUNK = 1 << 16
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


def check_file(file: dict, *, max_bytes: int) -> None:
    """Refuse what cannot be a usable recording before spending a download on it."""
    name = file.get("name") or "the file"
    if not is_media(file):
        raise MediaError(f"{name} is a {describe(file)} file, not audio or video.", code="not_audio")
    size = int(file.get("size") or 0)
    if size > max_bytes:
        raise MediaError(f"{name} is {size / 1e6:.0f} MB; the limit is {max_bytes / 1e6:.0f} MB.", code="too_large")
    if file.get("mode") == "external" or not (file.get("url_private_download") or file.get("url_private")):
        raise MediaError(f"{name} is not stored in Slack (an external link), so it cannot be read.",
                         code="not_audio")


async def download(file: dict, token: str, directory: Path, *, max_bytes: int,
                   session: aiohttp.ClientSession | None = None) -> Path:
    """Stream the file with the bot token into `directory`; refuses an HTML page and oversize bodies."""
    check_file(file, max_bytes=max_bytes)
    url = file.get("url_private_download") or file["url_private"]
    suffix = Path(file.get("name") or "").suffix[:10]
    own = session is None
    session = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=60))
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            if resp.status >= 500 or resp.status == 429:
                raise EngineUnavailable(f"Slack answered {resp.status} to the download; will retry.",
                                        code="download_failed")
            if resp.status != 200:
                raise MediaError(f"Slack refused the download of {file.get('name')} (HTTP {resp.status}).",
                                 code="download_failed")
            if resp.content_type == "text/html":
                raise MediaError(
                    f"Slack sent a web page instead of {file.get('name')}: the bot may lack access to the file.",
                    code="html_page")
            fd, name = tempfile.mkstemp(suffix=suffix, dir=directory)
            path = Path(name)
            written = 0
            with await asyncio.to_thread(open, fd, "wb") as out:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        path.unlink(missing_ok=True)
                        raise MediaError(f"{file.get('name')} is larger than {max_bytes / 1e6:.0f} MB.",
                                         code="too_large")
                    out.write(chunk)
            return path
    except aiohttp.ClientError as exc:
        raise EngineUnavailable(f"The download from Slack failed ({type(exc).__name__}); will retry.",
                                code="download_failed") from exc
    finally:
        if own:
            await session.close()
