"""The no-enroll summary's pure parts: numbered speakers, the /enroll invitation, the "Identify again" button,
chart lanes, the note when identifying again failed, and the button value."""
from __future__ import annotations

import json

import pytest

from bot.schema import IdentifyOutput
from bot.summary.blocks import (
    ENROLL_INVITE,
    IDENTIFY_AGAIN,
    MAX_BLOCKS,
    offers_identify_again,
    parse_recording_value,
    render_summary,
)
from bot.summary.chart import lane_names
from bot.summary.stats import summarize
from bot.summary.status import identify_again_failed

DIARIZED = IdentifyOutput.model_validate({"diarization": [
    {"speaker": "SPEAKER_00", "start": 0, "end": 10}, {"speaker": "SPEAKER_01", "start": 10, "end": 14},
    {"speaker": "SPEAKER_00", "start": 15, "end": 20}], "duration": 20.0})


def identified(matches: dict[str, str | None]) -> IdentifyOutput:
    return IdentifyOutput.model_validate({
        "diarization": DIARIZED.wire()["diarization"],
        "voiceprints": [{"speaker": s, "match": m, "confidence": {m: 90.0} if m else {}} for s, m in matches.items()]})


def buttons(blocks: list[dict]) -> list[dict]:
    found = [b["accessory"] for b in blocks if "accessory" in b]
    return found + [el for b in blocks if b["type"] == "actions" for el in b["elements"]]


def test_a_diarize_only_summary_numbers_speakers_invites_to_enroll_and_offers_identify_again():
    msg = render_summary(summarize(DIARIZED, diarize_only=True), file_name="kickoff.wav", recording_id=7)
    text = json.dumps(msg.blocks)
    assert "Speaker 1" in text and "Speaker 2" in text and "Unknown speaker" not in text
    assert msg.text.startswith("Speakers in kickoff.wav") and "Speaker 1 79%, Speaker 2 21%" in msg.text
    assert sum(ENROLL_INVITE in json.dumps(b) for b in msg.blocks) == 1 and "`/enroll`" in ENROLL_INVITE
    assert "nobody enrolled yet" in text and "Not me" not in text
    found = buttons(msg.blocks)
    assert [b["text"]["text"] for b in found] == ["This is me", "This is me", "Identify again"]
    again = found[-1]
    assert again["action_id"] == IDENTIFY_AGAIN and parse_recording_value(again["value"]) == 7


def test_an_identified_summary_has_no_invitation_and_offers_identify_again_only_for_unnamed_speakers():
    partly = render_summary(summarize(identified({"SPEAKER_00": "U1", "SPEAKER_01": None})),
                            file_name="a.wav", recording_id=3)
    text = json.dumps(partly.blocks)
    assert ENROLL_INVITE not in text and "Unknown speaker 1" in text and "<@U1>" in text
    assert [b["action_id"] for b in buttons(partly.blocks)] == ["not_me", "this_is_me", IDENTIFY_AGAIN]
    everyone = summarize(identified({"SPEAKER_00": "U1", "SPEAKER_01": "U2"}))
    assert not offers_identify_again(everyone)
    assert IDENTIFY_AGAIN not in json.dumps(render_summary(everyone, file_name="a.wav", recording_id=3).blocks)


def test_a_claim_on_a_numbered_speaker_is_shown_as_a_claim():
    s = summarize(DIARIZED, {"SPEAKER_01": "U9"}, diarize_only=True)
    text = json.dumps(render_summary(s, file_name="a.wav", recording_id=1).blocks)
    assert "Speaker 2 \\u2014 claimed by <@U9>" in text and "Undo claim" in text
    assert lane_names(s, {"U9": "Zoe"}) == ["Speaker 1", "Speaker 2 (claimed by Zoe)"]
    assert lane_names(summarize(DIARIZED)) == ["Unknown speaker 1", "Unknown speaker 2"]


def test_no_speech_gets_no_invitation_and_no_button():
    msg = render_summary(summarize(IdentifyOutput(), diarize_only=True), file_name="quiet.wav", recording_id=1)
    text = json.dumps(msg.blocks)
    assert "No speech was found" in text and ENROLL_INVITE not in text and IDENTIFY_AGAIN not in text


def test_huge_diarize_only_meetings_stay_within_slack_limits_with_every_tail_line():
    segments = [{"speaker": f"SPEAKER_{i:02d}", "start": i * 10.0, "end": i * 10.0 + 5} for i in range(60)]
    out = IdentifyOutput.model_validate({"diarization": segments})
    msg = render_summary(summarize(out, diarize_only=True), file_name="all-hands.wav", recording_id=1,
                         transcript="*Transcript:* transcribing…", note="a note")
    assert len(msg.blocks) <= MAX_BLOCKS
    kinds = json.dumps(msg.blocks[-5:])
    assert ENROLL_INVITE in kinds and "transcribing" in kinds and "a note" in kinds and IDENTIFY_AGAIN in kinds


def test_the_failure_note_escapes_and_hides_internals():
    shown = identify_again_failed("file_gone", "The recording is no longer in Slack <!channel>.", ref="ABC123")
    assert "&lt;!channel&gt;" in shown and "<!channel>" not in shown and "earlier one" in shown
    hidden = identify_again_failed("internal", "Traceback http://engine:8100/secret", ref="ABC123")
    assert "ref ABC123" in hidden and "engine:8100" not in hidden


@pytest.mark.parametrize("value", ["", "7:SPEAKER_00", "-1", "x"])
def test_a_foreign_button_value_is_refused(value: str):
    with pytest.raises(ValueError):
        parse_recording_value(value)
