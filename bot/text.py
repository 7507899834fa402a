"""Untrusted text (file names, engine messages, what people type) made safe to put into Slack messages, and the
one thing read out of it: the number of speakers a message sharing a recording states (`speaker_count`).

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
from dataclasses import dataclass

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


# -- speaker-count hints in the message that shares a recording ------------------------------------------

MAX_HINTED_SPEAKERS = 10
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
          "ten": 10}
_NUM = r"(?:\d+|" + "|".join(_WORDS) + r")"
_NOUNS = r"(?:speakers|people|persons|participants|voices|attendees)"
_ONE = r"(?:speaker|person|participant|voice)"
_START = r"(?<![\w.,:;/+#$€£-])"  # a number standing alone: not 1.5, 10:30, v2, #3, $4, 2-
_HINTS = re.compile("|".join([
    rf"{_START}(?P<lo>{_NUM})\s*(?:-|–|—|to|or)\s*(?P<hi>{_NUM})\s+{_NOUNS}\b",
    rf"\bbetween\s+(?P<blo>{_NUM})\s+and\s+(?P<bhi>{_NUM})\s+{_NOUNS}\b",
    rf"{_START}(?P<n>{_NUM})\s+(?:{_NOUNS}|of\s+us)\b",
    rf"\b(?:only|just)\s+(?P<single>one|1)\s+{_ONE}\b|\ba\s+single\s+{_ONE}\b(?P<a_single>)",
    rf"\bwe\s+(?:were|are)\s+(?:all\s+)?(?P<we>{_NUM})(?=\s*(?:$|[.,;:!)]|{_NOUNS}\b|of\s+us\b))",
    rf"\b(?:speakers|participants)\s*:\s*(?P<label>{_NUM})\b(?!\s*[-–.:/]\s*\d)",
]))
# Words right before a count that make it not the number of people speaking: hedges, comparisons, a part of
# a group ("3 of the 5 people", "the other 2 people"), a negation.
_HEDGE_BEFORE = re.compile(r"(?:\b(?:about|around|approx(?:imately)?|roughly|maybe|perhaps|probably|some|"
                           r"at\s+least|at\s+most|up\s+to|over|under|than|almost|nearly|like|not|no|of|other|"
                           r"first|last|another|extra|additional|more|fewer|less|and|or|to)(?:\s+(?:the|all))?|[~≈<>+-])\s*$")
# Right after: "-ish", "+", "or so", a question.
_HEDGE_AFTER = re.compile(r"^\s*(?:-?ish\b|\+|or\s+so\b|\?|or\s+more\b|or\s+less\b|at\s+most\b|max\b|tops\b)")
# Anywhere: the writer corrected or doubted themself ("3 speakers, no wait 4").
_DOUBT = re.compile(r"\b(?:no\s+wait|wait|actually|correction|i\s+mean|sorry|scratch\s+that|not\s+sure|"
                    r"i\s+think|or\s+maybe|might\s+be|possibly)\b")


@dataclass(frozen=True)
class SpeakerCount:
    """How many people speak, as the message said: exactly `low` when `low == high`, else between the two."""

    low: int
    high: int

    @property
    def exact(self) -> int | None:
        return self.low if self.low == self.high else None

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}–{self.high}"


def _number(word: str) -> int:
    return int(word) if word.isdigit() else _WORDS[word]


def speaker_count(text: str | None) -> SpeakerCount | None:
    """The number of speakers a message states ("3 speakers", "four people", "we were five", "two of us",
    "3-4 speakers"), or None when it states none clearly. Conservative: a count must sit right next to what it
    counts (speakers, people, participants, voices, "of us", "we were"), lie in 1–10, not be hedged ("about 4
    people", "4 people-ish", "3 of the 5 people"), and be the only count in the message; a message that
    corrects or doubts itself ("3 speakers, no wait 4", "4 speakers?") gives none."""
    flat = re.sub(r"[*_`]", "", str(text or "")).lower()  # bold, italics, code; a ~ (struck out, about) stays
    flat = re.sub(r"<[^>]*>", " ", flat)  # mentions, channels and links say nothing of the count
    if _DOUBT.search(flat):
        return None
    found: set[SpeakerCount] = set()
    for m in _HINTS.finditer(flat):
        if _HEDGE_BEFORE.search(flat[max(0, m.start() - 24):m.start()]) or _HEDGE_AFTER.match(flat[m.end():]):
            return None
        g = m.groupdict()
        if g["a_single"] is not None or g["single"]:
            low = high = 1
        elif g["lo"] or g["blo"]:
            low, high = _number(g["lo"] or g["blo"]), _number(g["hi"] or g["bhi"])
        else:
            low = high = _number(g["n"] or g["we"] or g["label"])
        if not 1 <= low <= high <= MAX_HINTED_SPEAKERS or (high == 1 and not (g["single"] or g["a_single"] is not None
                                                                           or g["label"])):
            return None
        found.add(SpeakerCount(low, high))
    return found.pop() if len(found) == 1 else None
