"""Decoding every format people share, level normalisation, and each media error with its message."""
from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from engine_support import SR, encode, needs_data, utterance

from bot.errors import MediaError
from bot.speech.audio import decode, normalise_level, spoken_duration


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return utterance("1998", 1)[: 5 * SR]


FORMATS = [
    ("clip.m4a", {"codec": "aac", "rate": 44100}),
    ("clip.webm", {"codec": "libopus", "rate": 48000}),
    ("clip.mp3", {"codec": "libmp3lame", "rate": 44100}),
    ("clip.ogg", {"codec": "libopus", "rate": 48000}),
    ("clip.mp4", {"codec": "aac", "rate": 44100, "video": True}),
    ("stereo.wav", {"codec": "pcm_s16le", "channels": 2}),
    ("clip-44k.flac", {"codec": "flac", "rate": 44100}),
]


@needs_data
@pytest.mark.parametrize("name,options", FORMATS, ids=[f[0] for f in FORMATS])
def test_decodes_to_16k_mono_float(tmp_path, speech, name, options):
    audio = decode(encode(tmp_path / name, speech, **options))
    assert audio.sample_rate == SR and audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert abs(audio.duration - 5.0) < 0.12
    assert same_speech(audio.samples, speech)


def envelope(x: np.ndarray) -> np.ndarray:
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)
    return np.sqrt((frames**2).mean(1))


def same_speech(got: np.ndarray, want: np.ndarray) -> bool:
    """The 20 ms loudness envelopes match (allowing a codec delay of up to 0.2 s): the speech came back."""
    a, b = envelope(got), envelope(want)
    n = min(len(a), len(b)) - 10
    return max(np.corrcoef(a[lag:lag + n], b[:n])[0, 1] for lag in range(10)) > 0.95


@needs_data
def test_stereo_is_mixed_down(tmp_path, speech):
    audio = decode(encode(tmp_path / "s.wav", speech, channels=2))
    # left = x, right = x/2: the mix is proportional to x
    assert np.corrcoef(audio.samples[: len(speech)], speech[: len(audio.samples)])[0, 1] > 0.99


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(MediaError) as err:
        decode(tmp_path / "empty.mp3")
    assert err.value.code == "empty" and "empty.mp3 is empty" in err.value.message


def test_not_audio(tmp_path):
    (tmp_path / "notes.txt").write_text("minutes of the meeting\n" * 50)
    with pytest.raises(MediaError) as err:
        decode(tmp_path / "notes.txt")
    assert err.value.code == "not_audio" and "not an audio or video file" in err.value.message


@needs_data
def test_video_without_audio(tmp_path, speech):
    path = encode(tmp_path / "silent-film.mp4", speech, video=True, audio=False)
    with pytest.raises(MediaError) as err:
        decode(path)
    assert err.value.code == "no_audio_track" and err.value.message == "silent-film.mp4 is a video without an audio track."


@needs_data
def test_corrupt(tmp_path, speech):
    good = encode(tmp_path / "good.flac", speech, codec="flac").read_bytes()
    bad = tmp_path / "bad.flac"
    bad.write_bytes(good[:64] + np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError) as err:
        decode(bad)
    assert err.value.code in {"corrupt", "not_audio"}
    assert "bad.flac" in err.value.message


@needs_data
def test_too_long_refused_from_header(tmp_path, speech):
    with pytest.raises(MediaError) as err:
        decode(encode(tmp_path / "long.wav", np.tile(speech, 3)), max_duration=10, noun="recording")
    assert err.value.code == "too_long"
    assert err.value.message == "The recording is 15 s long; recordings can be at most 10 s."


@needs_data
def test_too_long_refused_while_streaming(tmp_path, speech):
    """An ADTS stream does not state its duration: the limit is enforced as samples arrive."""
    path = encode(tmp_path / "long.aac", np.tile(speech, 3), codec="aac", rate=44100)
    with pytest.raises(MediaError) as err:
        decode(path, max_duration=5, noun="clip")
    assert err.value.code == "too_long" and "voiceprints take at most 5 s" in err.value.message


def test_silence_is_refused():
    with pytest.raises(MediaError) as err:
        normalise_level(np.zeros(10 * SR, np.float32))
    assert err.value.code == "silent"


@needs_data
def test_quiet_recording_is_brought_up(speech):
    quiet = speech * 0.01
    out = normalise_level(quiet)
    assert 0.2 < np.percentile(np.abs(out), 99.5) < 0.4
    assert np.abs(out).max() <= 1.0


def test_durations_read_like_a_person():
    assert spoken_duration(42) == "42 s"
    assert spoken_duration(12 * 60) == "12 min"
    assert spoken_duration(4.5 * 3600) == "4 h 30 min"


def test_excerpts_keep_a_short_stream_whole_whatever_its_block_sizes():
    from bot.speech.audio import Excerpts

    x = np.random.default_rng(0).uniform(-0.5, 0.5, 7 * SR).astype(np.float32)
    kept = Excerpts(block_seconds=2.0, capacity=8)
    sizes = [1000, 37, 32000, 5, 80000]
    edges = np.cumsum([0] + sizes + [len(x)])
    passed = list(kept.tap(x[a:b] for a, b in pairwise(edges) if a < len(x)))
    assert np.array_equal(np.concatenate(passed), x)  # the stream goes through untouched
    assert np.abs(kept.cut(0.5, 5.25) - x[SR // 2:int(5.25 * SR)]).max() < 1e-4
    assert len(kept.cut(6.5, 9.0)) == SR // 2  # past the end: what there is


def test_excerpts_of_a_long_stream_stay_bounded_and_spread_over_it():
    from bot.speech.audio import Excerpts

    kept = Excerpts(block_seconds=1.0, capacity=4)
    x = np.arange(20 * SR, dtype=np.float32) / (20 * SR)
    for _ in kept.tap(x[i:i + 3000] for i in range(0, len(x), 3000)):
        pass
    assert sorted(kept.kept) == [0, 8, 16]  # every 8th 1 s block once 20 did not fit in 4
    assert len(kept.cut(8.5, 9.5)) == SR // 2  # only the kept half of a span that crosses a dropped block
    assert len(kept.cut(3.0, 4.0)) == 0
