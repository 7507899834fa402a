"""Socket Mode's WebSocket URL carries a connection ticket: whoever holds it can open the app's socket and
receive its events. slack_sdk logs the URL at DEBUG (apps.connections.open's answer, the connect line), so
the log filter redacts the ticket like a token."""
from __future__ import annotations

import logging

from bot.logs import REDACTED, Redactor

TICKET = "5b2e1f0a-9c1d-4e7b-8f00-1234567890ab"
LINES = [
    f"body: {{'ok': True, 'url': 'wss://wss-primary.slack.com/link/?ticket={TICKET}&app_id=A0001'}}",
    f"Connecting to a new session (session id: s1, url: wss://wss-primary.slack.com/link/?ticket={TICKET})",
]


def test_the_socket_ticket_is_redacted_and_the_rest_kept():
    redactor = Redactor()
    for line in LINES:
        record = logging.LogRecord("slack_sdk", logging.DEBUG, __file__, 1, "%s", (line,), None)
        redactor.filter(record)
        assert TICKET not in record.getMessage() and f"ticket={REDACTED}" in record.getMessage()
        assert "wss-primary.slack.com/link/" in record.getMessage()
    assert "app_id=A0001" in Redactor().redact(LINES[0])
