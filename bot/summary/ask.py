""""Is this you?" as Block Kit: the private question to the person a speaker left unknown probably is, and the
same message once they answered. Pure: the recording's summary in, a message out; every text a user controls
(the file name) escaped."""
from __future__ import annotations

import re

from bot.summary.blocks import SlackMessage, context, section
from bot.summary.stats import TURN_GAP_SECONDS, Summary, clock, merge_intervals
from bot.text import channel_mention, escape

NEAR_YES = "near_match_yes"
NEAR_NO = "near_match_no"
FIRST_TURNS = 3  # turn start times shown, so the person can listen where that speaker talks
_SAFE_LINK = re.compile(r"https://[^\s<>|]+")


def first_turns(summary: Summary, speaker: str, count: int = FIRST_TURNS) -> list[float]:
    """When the speaker's first turns start (pauses under TURN_GAP_SECONDS join a turn, as in the summary)."""
    spans = [(s.start, s.end) for s in summary.segments if s.speaker == speaker]
    return [start for start, _ in merge_intervals(spans, TURN_GAP_SECONDS)[:count]]


def render_question(summary: Summary, speaker: str, *, question_id: int, channel_id: str, file_name: str,
                    permalink: str | None) -> SlackMessage:
    """The DM: which recording (a link to its thread), that speaker's talk time and first turn times, and the
    two answers. It says who else knows: nobody."""
    stats = summary.by_speaker(speaker)
    talk = f"{clock(stats.talk_time)} talk time · {stats.share:.0%} of speech · {stats.turns} turns" if stats else ""
    starts = ", ".join(clock(t) for t in first_turns(summary, speaker))
    where = f"<{permalink}|this recording>" if permalink and _SAFE_LINK.fullmatch(permalink) else "a recording"
    intro = (f"*Is this you?* In {where} (_{escape(file_name)}_) shared in {channel_mention(channel_id)}, one "
             "speaker was not named: their voice comes close to your voiceprint, but not close enough to name you "
             "on a guess. Only you are asked, and nobody else is told.")
    buttons = {"type": "actions", "block_id": f"near_match:{question_id}", "elements": [
        {"type": "button", "action_id": NEAR_YES, "value": str(question_id), "style": "primary",
         "text": {"type": "plain_text", "text": "Yes, that's me"}},
        {"type": "button", "action_id": NEAR_NO, "value": str(question_id),
         "text": {"type": "plain_text", "text": "No"}}]}
    blocks = [section(intro), section(f"*That speaker*: {talk}\nFirst turns at {starts}" if starts else
                                      f"*That speaker*: {talk}"),
              buttons,
              context("*Yes* shows you in the summary as *claimed by you*, like *This is me* (you can undo it "
                      "there); it never teaches Voice ID your voice. *No*: you are not asked about this "
                      "recording again.")]
    text = f"Is this you? A speaker in a recording shared in {channel_mention(channel_id)} may be you."
    return SlackMessage(text=text, blocks=blocks)


def render_answered(text: str) -> SlackMessage:
    """The question once answered (or no longer open): the outcome in place of the buttons."""
    return SlackMessage(text=text, blocks=[section(text)])
