"""Logging for every process, with a filter that redacts secrets at any level and keeps each record on one line.

slack_sdk logs whole request and response bodies at DEBUG, OAuth access and refresh tokens included, and
an exception text can quote a header: every record is scrubbed before any handler writes it.

`LOG_FORMAT=json` writes each record as one JSON object per line (time, level, logger, message, and where known
the recording or enrollment id and team a job set with `log_context`, and the ref of a `[ref %s]` line),
after the same redaction; text stays the default.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import traceback
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from pydantic import SecretStr

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
_MIN_SECRET = 6  # shorter configured values would blank out ordinary words
# Control characters in a message (a file name with a line break, a terminal escape) would let untrusted
# text forge a log line: each is written as an escape instead. Every character `str.splitlines` breaks at is
# one of them (U+0085, U+2028, U+2029 included), and the C1 controls (an 8-bit terminal escape). A traceback
# keeps its own lines; the exception texts inside it (messages, notes) are escaped the same way.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")

_PATTERNS = (
    re.compile(r"\bxox[a-zA-Z](?:\.xox[a-zA-Z])?-[A-Za-z0-9\-]+"),  # Slack bot, user, refresh tokens
    re.compile(r"\bxapp-[A-Za-z0-9\-]+"),  # Slack app-level tokens
    re.compile(r"([?&]ticket=)[^&\s'\"]+"),  # Socket Mode's WebSocket URL: the ticket opens the app's socket
    re.compile(r"(?i)(\bauthorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+"),  # a header, as text or dict repr
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=\-]+"),
    re.compile(r"(?i)(\b(?:client_secret|signing_secret|refresh_token|access_token|api_key|bot_token|app_token)"
               r"['\"]?\s*[:=]\s*['\"]?)[^'\"\s&,}]+"),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]*:)[^@\s/'\"]+(?=@)"),  # a URL's password (DATABASE_URL)
)


# What a job is working on, added to its JSON log lines: set by `log_context` in the job's own task (asyncio
# copies it into the tasks the job starts).
CONTEXT: contextvars.ContextVar[dict | None] = contextvars.ContextVar("voiceid_log_context", default=None)
REF_SLOT = "[ref %s]"  # how a line names the ref a person was shown (bot.failures)
_PLACEHOLDER = re.compile(r"%[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa]")


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Adds `fields` (those not None) to every log line written in this task and the tasks it starts."""
    token = CONTEXT.set({**(CONTEXT.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        CONTEXT.reset(token)


def _ref_of(record: logging.LogRecord) -> str | None:
    """The argument in a record's `[ref %s]` slot: taken from the call, so no text in a message can forge it."""
    msg, args = record.msg, record.args
    if not (isinstance(msg, str) and REF_SLOT in msg and isinstance(args, tuple)):
        return None
    index = len(_PLACEHOLDER.findall(msg.split(REF_SLOT)[0].replace("%%", "")))
    return str(args[index]) if index < len(args) else None


def escape_controls(text: str) -> str:
    """`text` on one line: each control or line-separator character written as its Python escape."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _inert_texts(te: traceback.TracebackException, seen: set[int]) -> None:
    """Escapes the exception texts of `te` and of every exception chained or grouped in it, in place."""
    if id(te) in seen:
        return
    seen.add(id(te))
    te._str = escape_controls(te._str)  # the message; the only place TracebackException keeps it
    if isinstance(te.__notes__, list | tuple):
        te.__notes__ = [escape_controls(str(note)) for note in te.__notes__]
    for name in ("msg", "text", "filename"):  # a SyntaxError's own lines
        if isinstance(getattr(te, name, None), str):
            setattr(te, name, escape_controls(getattr(te, name).rstrip("\n")))
    for other in (te.__cause__, te.__context__, *(te.exceptions or ())):
        if other is not None:
            _inert_texts(other, seen)


def format_exception(exc_info) -> str:
    """The traceback as `logging.Formatter.formatException` writes it, but no exception text can start a
    line of its own: a message such as "x\\n2024-01-01 ERROR forged" stays inside its exception's line."""
    te = traceback.TracebackException(*exc_info)
    _inert_texts(te, set())
    return "".join(te.format()).removesuffix("\n")


class Redactor(logging.Filter):
    """Replaces token-shaped strings, Authorization values and the configured secrets in each record."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        ref = _ref_of(record)
        if ref:
            record.ref = escape_controls(self.redact(ref))
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: the handler reports it
            return True
        record.msg, record.args = escape_controls(self.redact(message)), None
        if record.exc_info and not record.exc_text:
            record.exc_text = format_exception(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def secret_values(settings) -> list[str]:
    """Every secret setting's value (each key of a comma-separated list on its own)."""
    values = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values += [v.strip() for v in value.get_secret_value().split(",")]
    return [v for v in values if v]


class JsonFormatter(logging.Formatter):
    """One JSON object per line (ASCII only, so no character in it can break the line): time (UTC), level,
    logger, message, the job's `log_context` fields, `ref`, and the exception or stack when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                 .replace("+00:00", "Z"), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        entry.update(CONTEXT.get() or {})
        if getattr(record, "ref", None):
            entry["ref"] = record.ref
        if record.exc_info and not record.exc_text:
            record.exc_text = format_exception(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=True, default=str)


def configure_logging(level: str = "INFO", secrets: Iterable[str] = (), fmt: str = "text") -> None:
    """Root logging at `level` to stderr, every root handler behind one `Redactor`, as text or (`fmt="json"`)
    one JSON object per line; safe to call again."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
    root = logging.getLogger()
    root.setLevel(level.upper())
    redactor = Redactor(secrets)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, Redactor)]:
            handler.removeFilter(old)
        handler.addFilter(redactor)
        handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(FORMAT))
    logging.captureWarnings(fmt == "json")  # a library's warning becomes a line like any other
