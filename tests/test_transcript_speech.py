"""Transcripts on real speech: the recognizer's worker process, and `python -m bot transcribe` putting the
words of a short two-reader LibriSpeech mix on the right people."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import meetings
from tests.engine_support import ROOT, SR, needs_data, speaker_models, utterance

pytestmark = [pytest.mark.speech, needs_data]


def _write(path: Path, samples: np.ndarray) -> Path:
    return meetings.write_wav(path, samples.astype(np.float32))


async def test_worker_process_recognizes_speech_and_reports_progress(tmp_path: Path):
    from bot.transcription.recognizer import TranscriptionWorker

    clip = _write(tmp_path / "clip.wav", utterance("1998", 4))  # "... the stomach may be removed entire ..."
    worker = TranscriptionWorker("base", tmp_path / "var", "en")
    seen: list[float] = []
    try:
        result = await worker.transcribe(clip, seen.append)
    finally:
        await worker.close()
    text = " ".join(w.text for w in result.words).lower()
    assert "stomach" in text and "removed" in text
    assert result.language == "en" and all(0 <= w.start <= w.end <= result.duration + 0.1 for w in result.words)
    assert seen and all(0.0 <= f <= 1.0 for f in seen)


def test_transcribe_command_puts_each_readers_words_on_that_reader(tmp_path: Path):
    """Reader 1998 (enrolled as Alice) and reader 2033 (not enrolled) take turns; each word's speaker must be
    the reader whose utterance holds it."""
    from bot.speech import tasks
    from bot.speech.audio import Audio

    alice_clip = utterance("1998", 0)
    vp = tasks.make_voiceprint(speaker_models(), Audio(alice_clip)).voiceprint
    (tmp_path / "vp.json").write_text(json.dumps([{"label": "Alice", "voiceprint": vp}]))
    pieces = [("Alice", utterance("1998", 4)), ("other", utterance("2033", 1)), ("Alice", utterance("1998", 2))]
    gap = np.zeros(int(0.8 * SR), np.float32)
    mix, spans, t = [], [], 0.0
    for who, x in pieces:
        mix += [x, gap]
        spans.append((who, t, t + len(x) / SR))
        t += (len(x) + len(gap)) / SR
    media = _write(tmp_path / "meeting.wav", np.concatenate(mix))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "VAR_DIR": str(tmp_path / "var")}
    run = subprocess.run([sys.executable, "-m", "bot", "transcribe", str(media), "--voiceprints",
                          str(tmp_path / "vp.json")], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    words = out["wordLevelTranscription"]
    assert len(words) > 40
    other = {w["speaker"] for w in words if spans[1][1] <= w["start"] < spans[1][2]}
    assert len(other) == 1 and other != {"Alice"}
    right = 0
    for w in words:
        truth = next(who for who, a, b in spans if a - 0.5 <= (w["start"] + w["end"]) / 2 <= b + 0.5)
        right += w["speaker"] == ("Alice" if truth == "Alice" else other.copy().pop())
    assert right / len(words) >= 0.95
    turns = out["turnLevelTranscription"]
    assert [t["speaker"] for t in turns][:3] == ["Alice", other.pop(), "Alice"]
    assert "stomach" in turns[0]["text"].lower()
    assert out["exclusiveDiarization"] and out["language"] == "en"
