"""The recognizer's memory does not grow with the recording: the file is read block by block (once for its
level, once to recognise it), cut into pieces of bounded length in pauses, and the pieces' words are put back
on the recording's time. No model here: Whisper's place is taken by a stand-in that records what it is given
(the real model on real speech is in test_transcript_speech.py)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bot.errors import MediaError
from bot.speech.audio import SAMPLE_RATE as SR
from bot.speech.audio import decode, normalise_level
from bot.transcription import recognizer as rec
from bot.transcription.chunks import (
    CHUNK_SECONDS,
    SUBSAMPLE_LIMIT,
    LevelMeter,
    chunks,
    measure_level,
    quietest_cut,
)
from bot.transcription.recognizer import Recognizer, Word, recognize_pieces
from tests.engine_support import encode


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise bursts of 0.2–0.6 s with 0.05–0.2 s gaps (never a pause of 0.5 s), quiet enough to need gain."""
    rng = np.random.default_rng(seed)
    out, n = [], int(seconds * SR)
    while sum(map(len, out)) < n:
        out.append(rng.normal(0, 0.01, int(rng.uniform(0.2, 0.6) * SR)).astype(np.float32))
        out.append(np.zeros(int(rng.uniform(0.05, 0.2) * SR), np.float32))
    return np.concatenate(out)[:n]


def split(x: np.ndarray, sizes: list[int]):
    i = 0
    while i < len(x):
        for size in sizes:
            yield x[i:i + size]
            i += size


class FakeWhisper:
    """WhisperModel's `transcribe` as the recognizer calls it: one word at 1.0–1.5 s of whatever it is given
    (when it is long enough), the lengths it was given kept."""

    def __init__(self):
        self.lengths: list[int] = []

    def transcribe(self, samples, language=None, **_):
        self.lengths.append(len(samples))
        words = [SimpleNamespace(start=1.0, end=1.5, word=" word", probability=0.9)] if len(samples) > 2 * SR else []
        return iter([SimpleNamespace(end=1.5, words=words)]), SimpleNamespace(language=language or "de")


def fake_recognizer(chunk_seconds: float = CHUNK_SECONDS) -> Recognizer:
    fake = Recognizer.__new__(Recognizer)  # no weights: Whisper is the stand-in
    fake.model, fake.language, fake.model_name, fake.chunk_seconds = FakeWhisper(), "en", "fake", chunk_seconds
    return fake


def test_the_level_pass_gives_normalise_levels_samples_exactly():
    x = speechlike(90.0)
    for sizes in ([1024], [160_000], [7, 4096, 333]):
        level = measure_level(split(x, sizes))
        (offset, piece), = chunks(split(x, sizes), level.gain)
        assert offset == 0 and level.count == len(x)
        np.testing.assert_array_equal(piece, normalise_level(x))


def test_a_whole_piece_is_the_same_samples_from_a_bounded_level_sample():
    """CHUNK_SECONDS (4.8M samples) is past the subsample's limit, so it is thinned to every 2nd sample as
    normalise_level takes them for this length; a piece of exactly CHUNK_SECONDS is not cut."""
    x = speechlike(CHUNK_SECONDS)
    meter = LevelMeter()
    for block in split(x, [10_000]):
        meter.add(block)
    assert meter.kept <= SUBSAMPLE_LIMIT and meter.stride == len(x) // 2_000_000 == 2
    np.testing.assert_array_equal(np.concatenate(meter.parts), np.abs(x[::2]))
    (_, piece), = chunks(split(x, [10_000]), meter.level().gain)
    np.testing.assert_array_equal(piece, normalise_level(x))


def test_silence_is_refused_by_the_level_pass():
    with pytest.raises(MediaError) as caught:
        measure_level([np.zeros(SR, np.float32)] * 5)
    assert caught.value.code == "silent"


def test_a_four_hour_stream_is_held_one_bounded_piece_at_a_time():
    """Four hours of blocks, made as they are read: every piece is at most CHUNK_SECONDS, the pieces tile
    the stream, and when a piece is handed over the chunker has read at most one block past it."""
    block = speechlike(10.0)
    total_blocks = 4 * 360
    read = [0]

    def stream():
        for _ in range(total_blocks):
            read[0] += len(block)
            yield block

    expect, longest = 0, 0
    for offset, piece in chunks(stream(), gain=3.0):
        assert offset == expect
        assert len(piece) <= CHUNK_SECONDS * SR
        assert read[0] - offset <= CHUNK_SECONDS * SR + len(block)  # nothing read ahead beyond one block
        expect, longest = offset + len(piece), max(longest, len(piece))
    assert expect == total_blocks * len(block)
    assert longest >= (CHUNK_SECONDS - 30) * SR


def test_a_cut_falls_in_the_pause_near_the_limit():
    x = np.concatenate([speechlike(52.0, 1), np.zeros(int(0.8 * SR), np.float32), speechlike(30.0, 2)])
    pieces = list(chunks(split(x, [4000]), gain=1.0, chunk_seconds=60.0, search_seconds=20.0))
    assert len(pieces) == 2
    cut = pieces[1][0] / SR
    assert 52.0 + 0.25 <= cut <= 52.8 - 0.25
    assert quietest_cut(np.zeros(SR * 10, np.float32), 0, SR * 10) == SR * 10 - int(0.25 * SR)  # latest on a tie


def test_words_go_back_on_the_recordings_time_and_the_first_language_holds():
    calls = []

    def recognize(samples, language, report):
        calls.append(language)
        report(len(samples) / SR)
        if not samples.any():  # a piece without speech: Whisper guesses a language all the same
            return [], "fr"
        return [Word(0.5, 1.0, "hello", 0.9)], language or "de"

    pieces = [(0, np.zeros(10 * SR)), (10 * SR, np.ones(10 * SR)), (20 * SR, np.ones(5 * SR))]
    seen = []
    result = recognize_pieces(recognize, pieces, 25.0, None, seen.append)
    assert calls == [None, None, "de"]  # detection until a piece has words, then that language for the rest
    assert result.language == "de" and result.duration == 25.0
    assert [(w.start, w.end) for w in result.words] == [(10.5, 11.0), (20.5, 21.0)]
    assert seen == [10 / 25, 20 / 25, 1.0]


def test_the_worker_recognizes_a_file_in_bounded_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The worker's own path over a real file: Whisper never gets more than a piece, and the words come back
    on the file's time. (Before: it got the whole recording at once.)"""
    x = speechlike(150.0)
    media = encode(tmp_path / "meeting.wav", x)
    fake = fake_recognizer(chunk_seconds=40.0)
    monkeypatch.setattr(rec, "_warm", lambda: fake)
    out = rec.Transcription.from_wire(rec._work(str(media), 3600.0))
    assert max(fake.model.lengths) <= 40 * SR and sum(fake.model.lengths) == len(decode(media).samples)
    lengths = fake.model.lengths
    starts = np.cumsum([0, *lengths[:-1]]) / SR
    assert [w.start for w in out.words] == pytest.approx([s + 1.0 for s, n in zip(starts, lengths) if n > 2 * SR],
                                                         abs=1e-3)
    assert out.language == "en" and out.duration == pytest.approx(150.0, abs=0.01)


@pytest.mark.parametrize("kind", ["not_audio", "silent", "too_long"])
def test_bad_media_is_refused_before_the_model_is_asked_for(tmp_path: Path, kind: str):
    if kind == "not_audio":
        media = tmp_path / "notes.wav"
        media.write_text("not a recording\n" * 100)
    else:
        media = encode(tmp_path / "meeting.wav", np.zeros(20 * SR, np.float32) if kind == "silent" else speechlike(20))
    asked = []
    with pytest.raises(MediaError) as caught:
        rec.transcribe_file(lambda: asked.append(1), media, 10.0 if kind == "too_long" else 3600.0)
    assert not asked and (kind == "not_audio" or caught.value.code == kind)


def test_levels_are_kept_in_float32_like_the_whole_path():
    meter = LevelMeter()
    meter.add(np.array([0.5, -0.25], np.float64))
    assert meter.parts[0].dtype == np.float32 and meter.peak == 0.5
