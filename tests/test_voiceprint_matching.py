"""Several voiceprints per person, in the pure parts: an engine's answer per voiceprint label becomes the answer
per person (best of their voiceprints, exclusive by person, threshold, unknown labels name nobody), and the
answers of an identify split into batches merge into one."""
from __future__ import annotations

import numpy as np
import pytest

from bot.engines.batches import batches, joined_id, merge_outputs, merged_job, part_ids, same_speakers
from bot.schema import DiarizationSegment, Job, JobStatus
from bot.services.voiceprints import by_person
from bot.speech.matching import assign, best_per_group

OWNERS = {"vpA1": "UANN", "vpA2": "UANN", "vpB1": "UBEA"}
DIARIZATION = [{"speaker": "SPEAKER_00", "start": 0.0, "end": 4.0}, {"speaker": "SPEAKER_01", "start": 4.5, "end": 9.0},
               {"speaker": "SPEAKER_02", "start": 9.5, "end": 12.0}]


def output(conf: dict[str, dict[str, float]], matches: dict[str, str | None] | None = None, **extra) -> dict:
    """An engine's identify output with these confidence maps (speaker → label → confidence)."""
    matches = matches or {}
    return {"diarization": DIARIZATION, "duration": 12.0, **extra,
            "identification": [{**seg, "diarizationSpeaker": seg["speaker"], "match": matches.get(seg["speaker"]),
                                "speaker": matches.get(seg["speaker"]) or seg["speaker"]} for seg in DIARIZATION],
            "voiceprints": [{"speaker": s, "match": matches.get(s), "confidence": c} for s, c in conf.items()]}


def named(result: dict) -> dict[str, str | None]:
    return {m["speaker"]: m["match"] for m in result["voiceprints"]}


def test_a_person_is_named_once_by_their_best_voiceprint_whatever_the_engine_matched():
    # The engine matched by label: Ann's headset print to speaker 0 and her phone print to speaker 1.
    engine = output({"SPEAKER_00": {"vpA1": 82.0, "vpA2": 40.0, "vpB1": 10.0},
                     "SPEAKER_01": {"vpA1": 30.0, "vpA2": 91.0, "vpB1": 78.0},
                     "SPEAKER_02": {"vpA1": 5.0, "vpA2": 8.0, "vpB1": 20.0}},
                    {"SPEAKER_00": "vpA1", "SPEAKER_01": "vpA2"})
    result = by_person(engine, OWNERS, threshold=75)
    # Ann on both would name her twice; one-to-one by person gives the better total: Ann 0, Bea 1.
    assert named(result) == {"SPEAKER_00": "UANN", "SPEAKER_01": "UBEA", "SPEAKER_02": None}
    assert result["voiceprints"][1]["confidence"] == {"UANN": 91.0, "UBEA": 78.0}, "best of a person's prints"
    assert [(s["speaker"], s["match"]) for s in result["identification"]] == [
        ("UANN", "UANN"), ("UBEA", "UBEA"), ("SPEAKER_02", None)]
    assert "vpA1" not in str(result) and "vpB1" not in str(result), "no engine label is stored"


def test_the_second_voiceprint_names_someone_the_first_alone_would_not():
    conf = {"SPEAKER_00": {"vpA1": 60.0, "vpA2": 88.0, "vpB1": 12.0}}
    assert named(by_person(output(conf), OWNERS, 75))["SPEAKER_00"] == "UANN"
    only_first = {"vpA1": "UANN", "vpB1": "UBEA"}
    assert named(by_person(output(conf), only_first, 75))["SPEAKER_00"] is None


def test_nobody_is_named_under_the_threshold_or_by_a_voiceprint_deleted_since():
    conf = {"SPEAKER_00": {"vpA1": 74.9, "vpGONE": 99.0}, "SPEAKER_01": {"vpB1": 99.0}}
    result = by_person(output(conf, {"SPEAKER_00": "vpGONE", "SPEAKER_01": "vpB1"}), OWNERS, 75)
    assert named(result) == {"SPEAKER_00": None, "SPEAKER_01": "UBEA", "SPEAKER_02": None}
    assert result["voiceprints"][0]["confidence"] == {"UANN": 74.9}


def test_a_speaker_that_fits_two_people_is_a_guess_and_named_as_nobody():
    owners = {**OWNERS, "vpC1": "UCID"}  # Cid is enrolled in the channel and not in this recording
    # Through a phone line: Ann's phone print and Cid's both fit speaker 0; Bea's fits speaker 1 alone.
    conf = {"SPEAKER_00": {"vpA2": 98.7, "vpC1": 97.5, "vpB1": 20.0}, "SPEAKER_01": {"vpB1": 95.0, "vpA2": 30.0}}
    assert named(by_person(output(conf), owners, 75)) == {"SPEAKER_00": None, "SPEAKER_01": "UBEA",
                                                          "SPEAKER_02": None}
    # A person who fits too but has a speaker of their own is no rival: Cid speaks, as speaker 1.
    conf = {"SPEAKER_00": {"vpA1": 99.0, "vpC1": 80.0}, "SPEAKER_01": {"vpC1": 96.0, "vpA1": 10.0}}
    assert named(by_person(output(conf), owners, 75)) == {"SPEAKER_00": "UANN", "SPEAKER_01": "UCID",
                                                          "SPEAKER_02": None}
    assert named(by_person(output({"SPEAKER_00": {"vpA1": 60.0, "vpC1": 50.0}}), owners, 0))["SPEAKER_00"] == "UANN", \
        "threshold 0 matches always, as in pyannoteAI"


def test_an_engine_without_confidence_maps_keeps_its_matches_once_per_person():
    engine = output({}, {"SPEAKER_00": "vpA1", "SPEAKER_01": "vpA2"})
    engine["voiceprints"] = []
    assert sorted(filter(None, named(by_person(engine, OWNERS, 75)).values())) == ["UANN"]


def test_diarize_only_output_passes_and_engine_transcripts_are_left_out():
    diarized = {"diarization": DIARIZATION, "duration": 12.0}
    assert by_person(diarized, OWNERS, 75) == diarized
    words = [{"speaker": "vpA1", "start": 0.0, "end": 0.4, "text": "hi"}]
    result = by_person(output({"SPEAKER_00": {"vpA1": 90.0}}, wordLevelTranscription=words,
                              turnLevelTranscription=words), OWNERS, 75)
    assert "wordLevelTranscription" not in result and "turnLevelTranscription" not in result


def test_matching_groups_and_ignores_missing_scores():
    conf = np.array([[80.0, 90.0, np.nan], [70.0, np.nan, 60.0]])
    best = best_per_group(conf, [0, 0, 1], 2)
    assert best[0, 0] == 90.0 and np.isnan(best[0, 1]), "no score for a group stays no score"
    assert best[1].tolist() == [70.0, 60.0]
    assert assign(np.array([[np.nan, 50.0]]), threshold=0).matches == [1]
    assert assign(np.array([[np.nan]]), threshold=0).matches == [None], "no score, no match, even at threshold 0"


# -- batches ---------------------------------------------------------------------------------------------------

def test_batches_and_batched_job_ids():
    assert batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    job_id = joined_id(["a-1", "b-2"])
    assert part_ids(job_id) == ["a-1", "b-2"] and part_ids("a-1") is None


def test_merged_job_fails_with_its_part_runs_with_mean_progress_and_merges_when_done():
    ok = Job(job_id="1", status=JobStatus.succeeded, output=output({"SPEAKER_00": {"vpA1": 90.0}}))
    running = Job(job_id="2", status=JobStatus.running, progress=0.5)
    failed = Job(job_id="3", status=JobStatus.failed, output={"error": {"code": "not_audio", "message": "no"}})
    assert merged_job("batch:1,2", [ok, running]).status is JobStatus.running
    assert merged_job("batch:1,2", [ok, running]).progress == 0.75
    assert merged_job("batch:1,3", [ok, failed]).error.code == "not_audio"
    done = merged_job("batch:1,1", [ok, ok])
    assert done.status is JobStatus.succeeded and done.identify_output().voiceprints[0].confidence == {"vpA1": 90.0}


def test_merge_puts_every_parts_scores_on_the_first_parts_speakers():
    first = output({"SPEAKER_00": {"vpA1": 82.0}, "SPEAKER_01": {"vpA1": 20.0}, "SPEAKER_02": {"vpA1": 1.0}},
                   {"SPEAKER_00": "vpA1"}, warning="one")
    # The second part diarized the same speech under other labels: its SPEAKER_00 is the first's SPEAKER_01.
    second = output({"SPEAKER_00": {"vpB1": 93.0}, "SPEAKER_01": {"vpB1": 15.0}, "SPEAKER_02": {"vpB1": 2.0}},
                    {"SPEAKER_00": "vpB1"}, warning="two")
    swapped = {"SPEAKER_00": "SPEAKER_01", "SPEAKER_01": "SPEAKER_00", "SPEAKER_02": "SPEAKER_02"}
    second["diarization"] = [{**seg, "speaker": swapped[seg["speaker"]]} for seg in DIARIZATION]
    merged = merge_outputs([first, second])
    maps = {m["speaker"]: m["confidence"] for m in merged["voiceprints"]}
    assert maps["SPEAKER_01"] == {"vpA1": 20.0, "vpB1": 93.0} and maps["SPEAKER_00"] == {"vpA1": 82.0, "vpB1": 15.0}
    assert named(merged) == {"SPEAKER_00": "vpA1", "SPEAKER_01": "vpB1", "SPEAKER_02": None}
    assert merged["diarization"] == DIARIZATION and merged["warning"] == "one two"
    assert named(by_person(merged, OWNERS, 75)) == {"SPEAKER_00": "UANN", "SPEAKER_01": "UBEA", "SPEAKER_02": None}


def test_a_speaker_of_another_part_sharing_no_speech_is_left_out():
    ours = [DiarizationSegment(speaker="A", start=0, end=5)]
    theirs = [DiarizationSegment(speaker="X", start=1, end=4), DiarizationSegment(speaker="Y", start=6, end=8)]
    assert same_speakers(ours, theirs) == {"X": "A"}


@pytest.mark.parametrize("limit", [1, 2, 50])
def test_batches_cover_every_voiceprint_exactly_once(limit: int):
    items = [f"vp{i}" for i in range(7)]
    parts = batches(items, limit)
    assert all(len(p) <= limit for p in parts) and [x for p in parts for x in p] == items


@pytest.mark.parametrize(("engine", "setting", "per_job"), [("pyannoteai", 1000, 50), ("pyannoteai", 2, 2),
                                                            ("server", 200, 200), ("server", 50, 50)])
def test_each_http_engine_splits_at_its_limit(engine: str, setting: int, per_job: int):
    from bot.config import Settings
    from bot.engines.factory import make_engine

    settings = Settings(_env_file=None, engine=engine, pyannoteai_api_key="key", engine_url="https://engine.example",
                        engine_api_key="key", engine_max_voiceprints=setting)
    assert make_engine(settings).max_voiceprints == per_job, "pyannoteAI takes 50 per job whatever the setting"
