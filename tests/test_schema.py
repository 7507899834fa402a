"""The pyannoteAI schema: wire round-trips and the request rules (labels, counts, speakers)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.errors import MediaError
from bot.schema import (
    IdentifyOutput,
    IdentifyRequest,
    Job,
    JobStatus,
    VoiceprintOutput,
)

OUTPUT = {
    "diarization": [{"speaker": "SPEAKER_00", "start": 0.52, "end": 6.1},
                    {"speaker": "SPEAKER_01", "start": 5.8, "end": 11.34}],
    "identification": [
        {"speaker": "Alice", "start": 0.52, "end": 6.1, "diarizationSpeaker": "SPEAKER_00", "match": "Alice"},
        {"speaker": "SPEAKER_01", "start": 5.8, "end": 11.34, "diarizationSpeaker": "SPEAKER_01", "match": None},
    ],
    "voiceprints": [
        {"speaker": "SPEAKER_00", "match": "Alice", "confidence": {"Alice": 87.0, "Bob": 9.0}},
        {"speaker": "SPEAKER_01", "match": None, "confidence": {"Alice": 21.0, "Bob": 30.0}},
    ],
}


def test_identify_output_round_trips_on_the_wire():
    out = IdentifyOutput.model_validate(OUTPUT)
    assert out.identification[1].diarization_speaker == "SPEAKER_01"
    assert out.wire() == OUTPUT  # camelCase names, and `match: null` kept as the spec requires
    assert IdentifyOutput.model_validate(out.wire()) == out


def test_job_round_trip_and_error():
    job = Job(job_id="j1", status=JobStatus.failed, output=MediaError("The clip is empty.", code="empty").to_output())
    again = Job.model_validate(job.wire())
    assert again == job and again.error.code == "empty" and again.error.message == "The clip is empty."
    assert again.status.final and not JobStatus.running.final
    ok = Job(job_id="j2", status="succeeded", output={"voiceprint": "abc"})
    assert ok.voiceprint_output() == VoiceprintOutput(voiceprint="abc") and ok.error is None


def _request(**extra):
    base = {"url": "media://m", "voiceprints": [{"label": "Alice", "voiceprint": "x"}]}
    return IdentifyRequest.model_validate({**base, **extra})


def test_request_defaults_match_pyannoteai():
    req = _request()
    assert req.matching.threshold == 0 and req.matching.exclusive is True
    wire = _request(numSpeakers=3, matching={"threshold": 60, "exclusive": False}).wire()
    assert wire["numSpeakers"] == 3 and wire["matching"] == {"exclusive": False, "threshold": 60.0}


@pytest.mark.parametrize("bad", [
    {"voiceprints": []},
    {"voiceprints": [{"label": "A", "voiceprint": "x"}] * 2},
    {"voiceprints": [{"label": "SPEAKER_07", "voiceprint": "x"}]},
    {"matching": {"threshold": 101}},
    {"minSpeakers": 4, "maxSpeakers": 2},
    {"numSpeakers": 0},
])
def test_request_rules(bad):
    with pytest.raises(ValidationError):
        _request(**bad)


def test_a_servers_voiceprint_limit_is_checked_only_where_it_is_given():
    many = [{"label": f"p{i}", "voiceprint": "x"} for i in range(51)]
    assert len(_request(voiceprints=many).voiceprints) == 51, "the embedded engine takes any number"
    with pytest.raises(ValidationError, match="at most 50 voiceprints"):
        IdentifyRequest.model_validate({"url": "media://a", "voiceprints": many}, context={"max_voiceprints": 50})


def test_transcription_is_sent_only_when_asked():
    from bot.schema import DiarizeRequest

    vp = [{"label": "Alice", "voiceprint": "x"}]
    assert DiarizeRequest(url="media://a", transcription=True).wire()["transcription"] is True
    assert IdentifyRequest(url="media://a", voiceprints=vp, transcription=True).wire()["transcription"] is True
    assert "transcription" not in DiarizeRequest(url="media://a").wire()
    assert "transcription" not in IdentifyRequest(url="media://a", voiceprints=vp).wire()
    assert IdentifyRequest.model_validate({"url": "media://a", "voiceprints": vp, "transcription": True}).transcription
