"""Speaker-count hints read from the message that shares a recording (`bot.text.speaker_count`): a clear count
tied to who speaks is read, anything ambiguous gives none (and so changes nothing)."""
from __future__ import annotations

import pytest

from bot.text import SpeakerCount, speaker_count

CLEAR = [
    ("3 speakers", 3, 3),
    ("4 people", 4, 4),
    ("we were five", 5, 5),
    ("two of us", 2, 2),
    ("3-4 speakers", 3, 4),
    ("3–4 speakers", 3, 4),
    ("3 to 4 speakers", 3, 4),
    ("three or four people", 3, 4),
    ("between 2 and 3 speakers", 2, 3),
    ("Standup recording, 3 speakers.", 3, 3),
    ("Weekly sync with 6 participants", 6, 6),
    ("FOUR VOICES in this one", 4, 4),
    ("There were four of us on the call", 4, 4),
    ("we were 5 people", 5, 5),
    ("We are all three!", 3, 3),
    ("Speakers: 4", 4, 4),
    ("*3 speakers*, recorded on Zoom", 3, 3),
    ("<@U0001> and I recorded this, 2 people", 2, 2),
    ("Interview, only one speaker", 1, 1),
    ("a single speaker reading the report", 1, 1),
    ("ten attendees", 10, 10),
    ("Sync, 3 speakers (3 people in one room)", 3, 3),  # the same count twice is one count
    ("Retro 2026-12-06, 7 people", 7, 7),
    ("10:30 with 4 people", 4, 4),
]

UNCLEAR = [
    "",
    None,
    "3 agenda items",
    "meeting at 4 people-ish",
    "3 speakers, no wait 4",
    "3 speakers. Actually 4",
    "12 people",
    "0 speakers",
    "100 people",
    "3 speakers and 4 people",  # two different counts
    "about 4 people",
    "around five people",
    "~4 speakers",
    "~3 speakers~ 4 speakers",  # struck out
    "at least 3 speakers",
    "more than 5 people",
    "4 people or so",
    "5+ speakers",
    "4 speakers?",
    "3 of the 5 people spoke",
    "the other 2 people",
    "we were 3 minutes late",
    "we were five minutes early",
    "1.5 speakers",
    "v2 speakers",
    "3-12 speakers",
    "4-3 speakers",
    "1 speaker",  # "one speaker was hard to hear": a singular noun is no count unless "only"/"single"
    "one person asked a question",
    "I think 4 people",
    "not 3 speakers",
    "3 speakers or maybe 4",
    "&lt;3 speakers",
    "call notes: 3 items, 2 decisions",
    "two speakers' microphones failed, 5 people",
]


@pytest.mark.parametrize(("text", "low", "high"), CLEAR)
def test_a_clear_count_is_read(text, low, high):
    assert speaker_count(text) == SpeakerCount(low, high)


@pytest.mark.parametrize("text", UNCLEAR)
def test_anything_unclear_gives_no_count(text):
    assert speaker_count(text) is None


def test_exact_and_range_render():
    assert (SpeakerCount(3, 3).exact, str(SpeakerCount(3, 3))) == (3, "3")
    assert (SpeakerCount(3, 4).exact, str(SpeakerCount(3, 4))) == (None, "3–4")


def test_the_summary_line_says_where_the_count_came_from_and_shows_nothing_malformed():
    from bot.summary.blocks import hint_line

    assert hint_line({"low": 3, "high": 3, "from": "message"}) == "Speaker count from the message: 3"
    assert hint_line({"low": 3, "high": 4, "from": "message"}) == "Speaker count from the message: 3–4"
    assert hint_line({"low": 2, "high": 2, "from": "identify_again"}) == "Speaker count set with Identify again: 2"
    for odd in (None, {}, {"low": 3, "high": 2, "from": "message"}, {"low": "3", "high": 3, "from": "message"},
                {"low": 3, "high": 3, "from": "<!here>"}, {"low": 0, "high": 0, "from": "message"}):
        assert hint_line(odd) is None, odd


def test_the_identify_again_modal_round_trips_and_refuses_a_bad_number():
    from bot.summary.blocks import SPEAKERS_INVALID, identify_again_modal, parse_identify_again

    view = identify_again_modal(7, "C0001", "<!here> standup.wav", (3, 4, "message"))
    assert "<!here>" not in str(view) and "count from the message: 3–4" in str(view)

    def submitted(value):
        return {**view, "state": {"values": {"speakers": {"speakers": {"type": "number_input", "value": value}}}}}

    assert parse_identify_again(submitted("4")) == (7, "C0001", 4)
    assert parse_identify_again(submitted(None)) == (7, "C0001", None)
    for bad in ("0", "11", "2.5", "-1", "x"):
        with pytest.raises(ValueError, match=SPEAKERS_INVALID):
            parse_identify_again(submitted(bad))
