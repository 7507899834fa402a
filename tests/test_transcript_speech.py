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
from tests.shared_models import share_model_cache

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

    env = {**os.environ, "PYTHONPATH": str(ROOT), "VAR_DIR": str(share_model_cache(tmp_path / "var"))}
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


def test_a_recording_recognized_in_pieces_keeps_its_words_at_their_times(tmp_path: Path):
    """Three utterances cut into pieces of at most 10 s (so cuts fall between words inside an utterance, in
    its quietest half second), against the same recording in one piece: no word lost or doubled at a cut,
    every word back at its time (an offset gone wrong moves words by seconds). Whisper's own variation
    between two framings of the same speech allows a word or two and a few hundred milliseconds."""
    from difflib import SequenceMatcher

    from bot.speech.audio import decode, normalise_level
    from bot.transcription.recognizer import Recognizer, transcribe_file

    gap = np.zeros(int(0.6 * SR), np.float32)
    media = _write(tmp_path / "meeting.wav", np.concatenate(
        [x for u in (utterance("1998", 4), utterance("2033", 1), utterance("1998", 2)) for x in (u, gap)]))
    recognizer = Recognizer("base", tmp_path / "var", "en", chunk_seconds=10.0)
    whole = recognizer.transcribe(normalise_level(decode(media).samples)).words
    given: list[int] = []
    one_piece = recognizer.recognize
    recognizer.recognize = lambda samples, *rest: (given.append(len(samples)), one_piece(samples, *rest))[1]
    cut = transcribe_file(lambda: recognizer, media, None).words

    assert len(given) == 3 and max(given) <= 10 * SR
    assert [w.start for w in cut] == sorted(w.start for w in cut)

    def norm(words):
        return ["".join(c for c in w.text.lower() if c.isalnum()) for w in words]
    matcher = SequenceMatcher(None, norm(whole), norm(cut), autojunk=False)
    assert abs(len(cut) - len(whole)) <= 3 and matcher.ratio() >= 0.9, (norm(whole), norm(cut))
    for a, b, n in matcher.get_matching_blocks():
        for x, y in zip(whole[a:a + n], cut[b:b + n]):
            assert abs((x.start + x.end) / 2 - (y.start + y.end) / 2) <= 0.5, (x, y)
