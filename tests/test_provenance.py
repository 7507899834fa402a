"""Provenance in every summary: what the bot stores with a result (`with_provenance`: the engine, its
pipeline/models as it reports them, the threshold) and the one escaped context line the summary shows; a result
stored before provenance existed shows none. The real jobs' lines are checked in tests/test_no_enroll_e2e.py
(local engine, diarize-only and identify) and tests/test_http_engine.py (what our engine server reports)."""
from __future__ import annotations

from types import SimpleNamespace

from bot.config import EngineKind
from bot.engines.base import with_provenance
from bot.engines.factory import ENGINE_NAMES, PYANNOTEAI_THRESHOLD
from bot.services.summaries import summary_message
from bot.summary.blocks import provenance_line
from tests.people_support import output

LOCAL = SimpleNamespace(engine_id="local", name="local")
SERVER = SimpleNamespace(engine_id="server", name=ENGINE_NAMES[EngineKind.server])
PYANNOTEAI = SimpleNamespace(engine_id="pyannoteai", name=ENGINE_NAMES[EngineKind.pyannoteai])
REPORTED = {"pipeline": "v2", "models": "segmentation-3.0 + CAM++", "threshold": 75.0}


def line(engine, out: dict, threshold: float) -> str | None:
    return provenance_line(with_provenance(engine, out, threshold)["provenance"])


def test_our_engines_report_their_pipeline_models_and_the_threshold_they_applied():
    identified = output("U1") | {"provenance": REPORTED}
    assert with_provenance(LOCAL, identified, 75.0)["provenance"] == {"engine": "local", "name": "local", **REPORTED}
    # The server's report wins over what the bot would have sent: it says what its engine applied.
    assert line(SERVER, identified, 60.0) == ("Engine: the engine server · diarization pipeline v2 "
                                              "(segmentation-3.0 + CAM++) · match threshold 75")
    kept = with_provenance(SERVER, identified, 60.0)
    assert {k: v for k, v in kept.items() if k != "provenance"} == {k: v for k, v in identified.items()
                                                                      if k != "provenance"}


def test_pyannoteai_names_its_model_when_it_reports_one_and_the_threshold_is_the_one_sent():
    assert line(PYANNOTEAI, output("U1"), PYANNOTEAI_THRESHOLD) == "Engine: pyannoteAI · match threshold 50"
    assert line(PYANNOTEAI, output("U1") | {"model": "precision-2"}, 55.0) == (
        "Engine: pyannoteAI · model precision-2 · match threshold 55")


def test_a_diarize_only_result_compared_nobody_so_it_has_no_threshold():
    diarized = {"diarization": output("U1")["diarization"], "provenance": REPORTED | {"threshold": None}}
    stored = with_provenance(LOCAL, diarized, 75.0)["provenance"]
    assert "threshold" not in stored
    assert provenance_line(stored) == ("Engine: local · diarization pipeline v2 (segmentation-3.0 + CAM++) · "
                                       "no voiceprints compared")


def test_malformed_reports_are_left_out_and_everything_shown_is_escaped():
    odd = output("U1") | {"provenance": {"pipeline": 3, "models": "<!here> *x* <https://evil.example|y>",
                                         "threshold": 900}}
    stored = with_provenance(SERVER, odd, 70.0)["provenance"]
    assert "pipeline" not in stored and stored["threshold"] == 70.0, "not a pipeline, not a threshold: not guessed"
    shown = provenance_line(stored)
    assert "<!here>" not in shown and "&lt;!here&gt;" in shown and "<https://evil" not in shown and "*x*" not in shown
    assert provenance_line({"threshold": "high"}) is None and provenance_line(None) is None


def _rec(result: dict) -> SimpleNamespace:
    return SimpleNamespace(id=7, file_name="standup.wav", result=result, relabels=None, duration=14.0,
                           diarize_only=False, state=None)


def test_the_summary_has_one_provenance_line_and_a_result_stored_before_has_none():
    stamped = summary_message(_rec(with_provenance(LOCAL, output("U1") | {"provenance": REPORTED}, 75.0)),
                              transcript_on=False)
    lines = [b["elements"][0]["text"] for b in stamped.blocks if b["type"] == "context"]
    assert [t for t in lines if t.startswith("Engine:")] == [
        "Engine: local · diarization pipeline v2 (segmentation-3.0 + CAM++) · match threshold 75"]
    before = summary_message(_rec(output("U1")), transcript_on=False)
    assert "Engine:" not in str(before.blocks)
    assert len(stamped.blocks) == len(before.blocks) + 1
