"""Fetching a shared file from Slack: checked before (type, size: `bot.summary.files`; host) and while (HTML
page, size) downloading.

The bot token goes only to Slack's file host (or the host of SLACK_API_URL, for GovSlack and tests), never
to whatever other URL a file object names. The bytes go to a temporary file only; callers delete it when
the job is over.
"""
from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bot.errors import EngineUnavailable, MediaError
from bot.summary.files import check_file

log = logging.getLogger(__name__)

CHUNK = 1 << 16

# Where Slack serves `url_private_download` (docs.slack.dev, the file object). Its redirects to any other
# origin are followed without the token: aiohttp drops the Authorization header on a cross-origin redirect.
SLACK_FILE_HOSTS = ("files.slack.com",)


def token_may_go_to(url: str, api_url: str) -> bool:
    """Whether `url` is on one of Slack's file hosts over https, or on SLACK_API_URL's own scheme, host and
    port (a GovSlack or test server), or on its `files.` host, as files.slack.com is to slack.com."""
    target, api = urlsplit(url), urlsplit(api_url)
    try:
        port, api_port = target.port, api.port
    except ValueError:  # not a number, or out of range
        return False
    if target.username or target.password or not target.hostname:
        return False
    if target.scheme == "https" and port in (None, 443) and target.hostname in SLACK_FILE_HOSTS:
        return True
    same_api_host = target.hostname in (api.hostname, f"files.{api.hostname}")
    return target.scheme == api.scheme and same_api_host and port == api_port


async def download(file: dict, token: str, directory: Path, *, max_bytes: int, api_url: str,
                   session: aiohttp.ClientSession | None = None) -> Path:
    """Stream the file with the bot token into `directory`; refuses a URL off Slack's hosts (see
    `token_may_go_to`; `api_url` is the client's SLACK_API_URL), an HTML page and oversize bodies."""
    check_file(file, max_bytes=max_bytes)
    url = file.get("url_private_download") or file["url_private"]
    if not token_may_go_to(url, api_url):
        log.warning("file %s: refused to send the bot token to %s, which is not a Slack file host",
                    file.get("id"), urlsplit(url)._replace(query="", fragment="").geturl())
        raise MediaError(f"{file.get('name') or 'The file'} is not stored on Slack's own file servers, so Voice ID "
                         "will not fetch it.", code="not_in_slack")
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
