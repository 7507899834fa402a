"""No secret reaches a log at any level: `python -m bot serve` at LOG_LEVEL=DEBUG completes a real OAuth install
against the fake Slack, slack_sdk logs the token-bearing response, and every token and secret is redacted."""
from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from bot.logs import REDACTED, Redactor
from storage.database import Database
from testbed.fake_slack import SIGNING_SECRET, FakeSlack

ROOT = Path(__file__).resolve().parents[1]
CLIENT_SECRET = "client-secret-0123456789"
APP_TOKEN = "xapp-1-A0001-1234-abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _until_up(http: aiohttp.ClientSession, url: str, proc, log_path: Path, timeout: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        assert proc.returncode is None, log_path.read_text()
        try:
            async with http.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert asyncio.get_running_loop().time() < deadline, log_path.read_text()
        await asyncio.sleep(0.2)


async def test_serve_at_debug_logs_slack_responses_without_any_token_or_secret(tmp_path: Path):
    fake = FakeSlack()
    await fake.start()
    port = _free_port()
    db_path = tmp_path / "var" / "voiceid.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_", "DATA_", "ENGINE"))}
    env |= {"SLACK_CLIENT_ID": "111.222", "SLACK_CLIENT_SECRET": CLIENT_SECRET, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.api_url, "LOG_LEVEL": "DEBUG", "HOST": "127.0.0.1", "PORT": str(port),
            "ENGINE": "local", "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", cwd=tmp_path, env=env,
                                                    stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await _until_up(http, f"{base}/healthz", proc, log_path)
            async with http.get(f"{base}/slack/install", allow_redirects=False) as page:
                location = page.headers.get("Location") or await page.text()
                cookie = page.headers["Set-Cookie"].split(";")[0]
            state = re.search(r"state=([\w\-]+)", location).group(1)
            async with http.get(f"{base}/slack/oauth_redirect", params={"code": "good-code", "state": state},
                                headers={"Cookie": cookie}) as done:
                assert done.status == 200, await done.text()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0, log_path.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await fake.close()

    output = log_path.read_text()
    assert "Received the following response" in output and "access_token" in output, "slack_sdk logged at DEBUG"
    assert REDACTED in output
    refresh_tokens = list(fake.refresh_tokens)
    for secret in (fake.token, *refresh_tokens, CLIENT_SECRET, SIGNING_SECRET):
        assert secret not in output, f"{secret[:6]}… leaked into the log"
    key = (tmp_path / "var" / "data-encryption.key").read_text().strip()
    assert key not in output

    db = Database(f"sqlite:///{db_path}")
    try:
        async with db.session() as s:
            stored = (await s.exec(text("SELECT bot_token, bot_refresh_token FROM workspace"))).one()
    finally:
        await db.dispose()
    assert stored[0] and fake.token not in stored[0] and refresh_tokens[0] not in stored[1], "tokens sealed at rest"


@pytest.mark.parametrize("line", [
    "headers: {'Authorization': 'Bearer xoxb-9-9-abc', 'User-Agent': 'x'}",
    "Authorization: Basic MTExLjIyMjpjbGllbnQtc2VjcmV0",
    "body: {'ok': True, 'access_token': 'xoxe.xoxb-1-rotating', 'refresh_token': 'xoxe-1-abc'}",
    f"socket mode with {APP_TOKEN}",
    "form: client_secret=client-secret-0123456789&code=good-code",
    "signing secret test-signing-secret in a message",
    "cannot reach postgresql+asyncpg://voiceid:MTExLjIyMjpjbGllbnQtc2VjcmV0@db:5432/voiceid",
])
def test_redactor_covers_headers_tokens_and_configured_secrets(line: str):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(Redactor([SIGNING_SECRET, CLIENT_SECRET]))
    logger = logging.getLogger(f"voiceid.test.redaction.{abs(hash(line))}")
    logger.propagate, logger.level = False, logging.DEBUG
    logger.addHandler(handler)
    logger.debug("%s", line)
    try:
        raise RuntimeError(line)
    except RuntimeError:
        logger.exception("failed")
    out = stream.getvalue()
    for secret in ("xoxb-9-9-abc", "MTExLjIyMjpjbGllbnQtc2VjcmV0", "xoxe.xoxb-1-rotating", "xoxe-1-abc", APP_TOKEN,
                   CLIENT_SECRET, SIGNING_SECRET):
        assert secret not in out
    assert out.count(REDACTED) >= 2 and "RuntimeError" in out


def test_untrusted_text_cannot_forge_a_log_line():
    """A recording named with a line break (or a terminal escape) stays inside its own record's one line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(Redactor())
    logger = logging.getLogger("voiceid.test.forging")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    logger.info("recording %s queued", "standup.m4a\nERROR bot.keys: key file deleted\r\x1b[2K")
    try:
        raise ValueError("two\nlines")
    except ValueError:
        logger.exception("failed on %s", "x\ny")
    lines = stream.getvalue().splitlines()
    assert lines[0] == r"INFO recording standup.m4a\nERROR bot.keys: key file deleted\r\x1b[2K queued"
    assert lines[1] == r"ERROR failed on x\ny" and lines[2].startswith("Traceback")  # tracebacks keep their lines


FORGED = "2024-05-01 12:00:00,000 ERROR bot.keys: key file deleted"


@pytest.mark.parametrize("brk", ["\n", "\r\n", "\u2028", "\u2029", "\u0085", "\x0b", "\x1c"])
def test_exception_text_cannot_forge_a_log_record(brk: str):
    """Every character Python's `splitlines` (and so a log reader) breaks at stays escaped: in the message, in
    an exception's text inside the traceback, in a chained exception's, a note's, an exception group's."""
    from bot.logs import FORMAT

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(Redactor())
    logger = logging.getLogger("voiceid.test.forging.traceback")
    logger.propagate, logger.level = False, logging.INFO
    logger.handlers = [handler]
    try:
        try:
            raise KeyError(f"standup.m4a{brk}{FORGED}")
        except KeyError as inner:
            inner.add_note(f"note{brk}{FORGED}")
            raise ValueError(f"decoding failed{brk}{FORGED}") from inner
    except ValueError:
        logger.exception("recording %s failed", f"x{brk}{FORGED}")
    try:
        raise ExceptionGroup(f"group{brk}{FORGED}", [OSError(f"member{brk}{FORGED}")])
    except ExceptionGroup:
        logger.warning("engine failed", exc_info=True)
    out = stream.getvalue()
    records = [line for line in out.splitlines() if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", line)]
    assert len(records) == 2, out  # the two real records, and no forged one
    assert "Traceback (most recent call last):" in out and "The above exception was the direct cause" in out
    assert out.count(repr(brk)[1:-1]) >= 6, out  # each text kept, its line break written as an escape
