"""A recording as bounded pieces for the recognizer, so its memory does not grow with the recording's length.

Two passes over the decoded stream (pure: blocks in, numbers and arrays out). `measure_level` reads it once
for the level normalisation that `bot.speech.audio.normalise_level` applies to a whole recording (peak and
the 99.5th percentile of a bounded subsample), keeping a few MB whatever the length. `chunks` then cuts the
normalised stream into pieces of at most `CHUNK_SECONDS`, each cut in the quietest half second of the last
`SEARCH_SECONDS` before the limit (a pause between words, found with a cheap energy measure), so no word is
cut in two. A recording up to `CHUNK_SECONDS` long is one piece holding exactly the samples that
`normalise_level(decode(...).samples)` gives, so it is recognised exactly as before.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from bot.speech.audio import MAX_GAIN, SAMPLE_RATE, TARGET_LEVEL, check_not_silent

# Whisper's VAD and log-mel features take about 50 MB per minute of speech at once (the recognizer's peak was
# 840 MB for 10 min in one piece, 14 GB for 4 h): with 5-min pieces it was 759 MB for 4 h (bench.transcript).
CHUNK_SECONDS = 300.0
SEARCH_SECONDS = 30.0
QUIET_SECONDS = 0.5  # the length of the quiet stretch a cut is centred in
FRAME_SECONDS = 0.05
# normalise_level takes the percentile of every sample up to 4M samples (250 s), then of about 2M–4M samples
# spread evenly; a power-of-two stride keeps the same bound without knowing the length in advance.
SUBSAMPLE_LIMIT = 4_000_000


@dataclass(frozen=True)
class Level:
    """What the level pass found: the recording's length in samples and normalise_level's gain for it."""

    count: int
    gain: float

    @property
    def duration(self) -> float:
        return self.count / SAMPLE_RATE


@dataclass
class LevelMeter:
    """The level pass: sample count, peak and an evenly strided subsample of |x| (at most SUBSAMPLE_LIMIT)."""

    count: int = 0
    peak: float = 0.0
    stride: int = 1
    parts: list[np.ndarray] = field(default_factory=list)
    kept: int = 0

    def add(self, block: np.ndarray) -> None:
        magnitude = np.abs(np.asarray(block, np.float32).reshape(-1))
        if magnitude.size:
            self.peak = max(self.peak, float(magnitude.max()))
            part = magnitude if self.stride == 1 else magnitude[(-self.count) % self.stride::self.stride].copy()
            self.parts.append(part)
            self.kept += len(part)
            self.count += len(magnitude)
        if self.kept > SUBSAMPLE_LIMIT:
            kept = np.concatenate(self.parts)[::2].copy()  # global indices that are multiples of the doubled stride
            self.parts, self.kept, self.stride = [kept], len(kept), self.stride * 2

    def level(self) -> Level:
        """normalise_level's gain for these samples; a silent recording is refused as it refuses it."""
        check_not_silent(self.peak)
        loud = float(np.percentile(np.concatenate(self.parts), 99.5))
        return Level(self.count, min(MAX_GAIN, TARGET_LEVEL / max(loud, 1e-9)))


def measure_level(blocks: Iterable[np.ndarray]) -> Level:
    """One pass over the stream; decoding errors (damaged, too long) and silence surface here, before any
    model loads. Only two numbers are kept from it."""
    meter = LevelMeter()
    for block in blocks:
        meter.add(block)
    return meter.level()


def normalised(block: np.ndarray, gain: float) -> np.ndarray:
    out = np.asarray(block, np.float32).reshape(-1) * np.float32(gain)
    np.clip(out, -1.0, 1.0, out=out)
    return out


def quietest_cut(samples: np.ndarray, lo: int, hi: int) -> int:
    """The index in [lo, hi] at the middle of the quietest QUIET_SECONDS stretch (latest on a tie, so pieces
    stay long), by mean energy over FRAME_SECONDS frames."""
    frame = int(FRAME_SECONDS * SAMPLE_RATE)
    n = (hi - lo) // frame
    span = max(1, int(QUIET_SECONDS / FRAME_SECONDS))
    if n < span:
        return hi
    energy = np.square(samples[lo:lo + n * frame].astype(np.float64)).reshape(n, frame).mean(axis=1)
    smooth = np.convolve(energy, np.ones(span), mode="valid")  # smooth[i]: frames i .. i+span-1
    best = len(smooth) - 1 - int(np.argmin(smooth[::-1]))
    return lo + (best * frame) + (span * frame) // 2


def chunks(blocks: Iterable[np.ndarray], gain: float, chunk_seconds: float = CHUNK_SECONDS,
           search_seconds: float = SEARCH_SECONDS) -> Iterator[tuple[int, np.ndarray]]:
    """(offset in samples, normalised samples) pieces of at most `chunk_seconds` that tile the stream; at
    most one piece plus one incoming block is held at a time."""
    size = int(chunk_seconds * SAMPLE_RATE)
    search = min(int(search_seconds * SAMPLE_RATE), size // 2)
    held: list[np.ndarray] = []
    count = offset = 0
    for block in blocks:
        block = normalised(block, gain)
        held.append(block)
        count += len(block)
        while count > size:
            pending = np.concatenate(held)
            cut = quietest_cut(pending, size - search, size)
            yield offset, pending[:cut]
            rest = pending[cut:].copy()  # not a view that would keep all of `pending` alive
            del pending
            held, count, offset = [rest], len(rest), offset + cut
    if count:
        yield offset, np.concatenate(held)
