"""Untrusted text (file names, engine messages, what people type) made safe to put into Slack messages.

Slack reads `<…>` in `text` and mrkdwn as mentions, broadcasts (`<!channel>`) and links (`<url|label>`),
and `&` starts an entity; escaping those three keeps such text inert. Line breaks and other control
characters become spaces, so a name cannot start a line that looks like the bot's own. Mentions we build
ourselves (`mention`: only of a Slack user id) are added after escaping and stay live.
"""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_USER_ID = re.compile(r"[UW][A-Z0-9_]+")  # Slack user ids (tests add "_"): nothing Slack parses


def escape(text: object) -> str:
    """`text` as inert Slack text: `&`, `<`, `>` escaped, control characters and line breaks as one space."""
    flat = _CONTROL.sub(" ", str(text))
    return flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(user_id: str) -> str:
    """`<@U…>` for a Slack user id; anything else (e.g. a label an engine made up) as inert text."""
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else escape(user_id)
