"""Untrusted text (file names, engine messages, what people type) made safe to put into Slack messages.

Slack reads `<…>` in `text` and mrkdwn as mentions, broadcasts (`<!channel>`) and links (`<url|label>`),
and `&` starts an entity; escaping those three keeps such text inert. Line breaks and other control
characters become spaces, so a name cannot start a line that looks like the bot's own. Mentions we build
ourselves (`<@U123>` from validated ids) are added after escaping and stay live.
"""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def escape(text: object) -> str:
    """`text` as inert Slack text: `&`, `<`, `>` escaped, control characters and line breaks as one space."""
    flat = _CONTROL.sub(" ", str(text))
    return flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
