"""Untrusted text (file names, engine messages, what people type) made safe to put into Slack messages.

Slack reads `<…>` in `text` and mrkdwn as mentions, broadcasts (`<!channel>`) and links (`<url|label>`),
and `&` starts an entity: those three are escaped as Slack documents. mrkdwn has no escape character for
the rest, so `escape` makes them inert in ways that cannot depend on how Slack's parser treats a
neighbouring character:
- `*`, `_`, `~` and the backtick (bold, italics, strike, code) become look-alike characters Slack does not
  read as markup (∗ ˍ ∼ ˋ);
- an invisible WORD JOINER (U+2060) follows every `:` and `@` and `#` and splits `www.`, so no
  `scheme://` or `www.` link, `:emoji:`, `@here` or `#channel` is left in the text, and one precedes a
  leading `&gt;` (a block quote);
- line breaks and other control characters (U+0085, U+2028, U+2029, the bidirectional overrides that can
  disguise a name) become spaces, so a name cannot start a line that looks like the bot's own.
Block Kit mrkdwn objects holding such text are also marked `verbatim` (see `bot.summary.blocks.mrkdwn`):
Slack then turns no bare URL, channel or mention into a link at all. Mentions we build ourselves
(`mention`: only of a Slack user id) are added after escaping and stay live.
"""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")
_USER_ID = re.compile(r"[UW][A-Z0-9]+")  # Slack user ids: nothing Slack parses
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9_]+")  # Slack channel ids
_MARKUP = str.maketrans({"*": "\u2217", "_": "\u02cd", "~": "\u223c", "`": "\u02cb"})
WORD_JOINER = "\u2060"
_JOIN = re.compile(r"(?<=[:@#])|(?i:(?<=\bwww)(?=\.))")  # after : @ # and inside "www."


def escape(text: object) -> str:
    """`text` as inert Slack text (see the module's docstring): no entity, mention, link, emoji or format."""
    flat = _JOIN.sub(WORD_JOINER, _CONTROL.sub(" ", str(text)).translate(_MARKUP))
    inert = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return WORD_JOINER + inert if inert.startswith("&gt;") else inert


def mention(user_id: str) -> str:
    """`<@U…>` for a Slack user id; anything else (e.g. a label an engine made up) as inert text."""
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else escape(user_id)


def channel_mention(channel_id: str) -> str:
    """`<#C…>` for a Slack channel id (Slack shows a private channel the reader cannot see as such, without its
    name); anything else as inert text."""
    return f"<#{channel_id}>" if _CHANNEL_ID.fullmatch(channel_id) else escape(channel_id)
