"""The summary's pure parts: statistics, Block Kit within Slack's limits, the chart, the status messages."""
from __future__ import annotations

import json

import pytest

from bot.schema import IdentifyOutput
from bot.summary.blocks import MAX_BLOCKS, parse_button_value, render_summary
from bot.summary.chart import timeline_png
from bot.summary.stats import clock, merge_intervals, summarize
from bot.summary.status import progress_bar, render_failure, render_progress


def output(segments: list[tuple[str, float, float]], matches: dict[str, tuple[str | None, float]]) -> IdentifyOutput:
    return IdentifyOutput.model_validate({
        "diarization": [{"speaker": s, "start": a, "end": b} for s, a, b in segments],
        "voiceprints": [{"speaker": s, "match": m, "confidence": {m: c} if m else {}} for s, (m, c) in matches.items()],
    })


MEETING = output(
    [("SPEAKER_00", 0, 10), ("SPEAKER_01", 9, 15), ("SPEAKER_00", 15.5, 20), ("SPEAKER_02", 30, 31),
     ("SPEAKER_00", 40, 42)],
    {"SPEAKER_00": ("U1", 91.4), "SPEAKER_01": (None, 0), "SPEAKER_02": (None, 0)})


def test_stats_talk_time_turns_share_and_order():
    s = summarize(MEETING)
    assert [x.speaker for x in s.speakers] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]
    ann, bob, cat = s.speakers
    assert ann.user_id == "U1" and ann.confidence == pytest.approx(91.4)
    assert ann.talk_time == pytest.approx(16.5) and bob.talk_time == pytest.approx(6) and cat.talk_time == 1
    assert ann.turns == 3
    assert ann.longest_turn == pytest.approx(10)
    assert sum(x.share for x in s.speakers) == pytest.approx(1.0)
    assert (bob.unknown_index, cat.unknown_index) == (1, 2)
    assert s.duration == 42


def test_relabels_override_the_engine_and_a_claim_names_nobody():
    s = summarize(MEETING, {"SPEAKER_01": "U2", "SPEAKER_00": None})
    assert s.by_speaker("SPEAKER_01").user_id is None and s.by_speaker("SPEAKER_01").claimed_by == "U2"
    assert s.by_speaker("SPEAKER_00").user_id is None and s.by_speaker("SPEAKER_00").unknown_index == 1
    assert (s.by_speaker("SPEAKER_01").unknown_index, s.by_speaker("SPEAKER_02").unknown_index) == (2, 3)


def test_merge_and_format():
    assert merge_intervals([(5, 6), (0, 2), (1, 3), (3.5, 4)], gap=0.5) == [(0, 4), (5, 6)]
    assert [clock(x) for x in (7, 750, 3723)] == ["0:07", "12:30", "1:02:03"]


def test_blocks_show_people_unknowns_and_buttons():
    msg = render_summary(summarize(MEETING), file_name="standup.m4a", recording_id=12)
    text = json.dumps(msg.blocks)
    assert "<@U1>" in text and "91% match" in text and "Unknown speaker 1" in text and "Unknown speaker 2" in text
    assert msg.text.startswith("Speakers in standup.m4a (0:42): <@U1> 70%")
    buttons = [b["accessory"] for b in msg.blocks if "accessory" in b]
    assert [b["action_id"] for b in buttons] == ["not_me", "this_is_me", "this_is_me"]
    assert parse_button_value(buttons[0]["value"]) == (12, "SPEAKER_00")


def test_blocks_stay_within_slack_limits_for_huge_meetings():
    segs = [(f"SPEAKER_{i:02d}", i * 60.0 + j * 7, i * 60.0 + j * 7 + 5) for i in range(80) for j in range(8)]
    out = output(segs, {f"SPEAKER_{i:02d}": (f"U{i}" if i % 2 else None, 70.0) for i in range(80)})
    msg = render_summary(summarize(out), file_name="x" * 400 + ".mp4", recording_id=1)
    assert len(msg.blocks) <= MAX_BLOCKS
    assert len(json.dumps(msg.blocks)) < 40000
    for b in msg.blocks:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= 150
    assert "Who spoke when" in json.dumps(msg.blocks)  # 80 minutes: the overview is there
    assert msg.text and len(msg.text) <= 3000


def test_empty_result_says_so():
    msg = render_summary(summarize(IdentifyOutput()), file_name="quiet.wav", recording_id=1)
    assert "No speech" in json.dumps(msg.blocks) and "no speech" in msg.text


def test_chart_is_a_png_with_one_lane_per_speaker():
    png = timeline_png(summarize(MEETING), {"U1": "Ann"}, title="standup.m4a")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 3000


def test_status_messages():
    assert progress_bar(0.5).endswith("50%") and progress_bar(2).endswith("100%")
    assert "Identifying speakers in a.wav" in render_progress("a.wav", 0.3).text
    fail = render_failure("a.wav", "silent", "No speech was found.", ref="R1")
    assert "No speech was found" in fail.text and "microphone" in json.dumps(fail.blocks)


def test_short_pauses_do_not_end_a_turn():
    s = summarize(output([("SPEAKER_00", 0, 4), ("SPEAKER_00", 4.6, 9), ("SPEAKER_00", 12, 13)],
                         {"SPEAKER_00": (None, 0)}))
    assert s.speakers[0].turns == 2 and s.speakers[0].longest_turn == pytest.approx(9)
