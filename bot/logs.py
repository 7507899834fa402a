"""Logging for every process, with a filter that redacts secrets at any level and keeps each record on one line.

slack_sdk logs whole request and response bodies at DEBUG, OAuth access and refresh tokens included, and
an exception text can quote a header: every record is scrubbed before any handler writes it.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from pydantic import SecretStr

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
_MIN_SECRET = 6  # shorter configured values would blank out ordinary words
# Control characters in a message (a file name with a line break, a terminal escape) would let untrusted
# text forge a log line: each is written as an escape instead; tracebacks keep their lines.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

_PATTERNS = (
    re.compile(r"\bxox[a-zA-Z](?:\.xox[a-zA-Z])?-[A-Za-z0-9\-]+"),  # Slack bot, user, refresh tokens
    re.compile(r"\bxapp-[A-Za-z0-9\-]+"),  # Slack app-level tokens
    re.compile(r"([?&]ticket=)[^&\s'\"]+"),  # Socket Mode's WebSocket URL: the ticket opens the app's socket
    re.compile(r"(?i)(\bauthorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+"),  # a header, as text or dict repr
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=\-]+"),
    re.compile(r"(?i)(\b(?:client_secret|signing_secret|refresh_token|access_token|api_key|bot_token|app_token)"
               r"['\"]?\s*[:=]\s*['\"]?)[^'\"\s&,}]+"),
)


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
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: the handler reports it
            return True
        record.msg, record.args = _CONTROL.sub(lambda m: repr(m.group())[1:-1], self.redact(message)), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
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


def configure_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Root logging at `level` to stderr, every root handler behind one `Redactor`; safe to call again."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
    root = logging.getLogger()
    root.setLevel(level.upper())
    redactor = Redactor(secrets)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, Redactor)]:
            handler.removeFilter(old)
        handler.addFilter(redactor)
