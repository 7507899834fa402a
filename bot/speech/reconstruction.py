"""Reconstruction: windows' local activity + their speaker assignment → global frame-level diarization.

Each frame gets a speaker count (local activity summed per window, averaged over the windows that cover the
frame, rounded) and keeps the `count` speakers with the most aggregated activity there — so overlapped speech
yields two speakers. Exclusive diarization keeps at most one speaker per frame (for transcript alignment).
"""
from __future__ import annotations

import numpy as np

from bot.speech.segmentation import FRAME_DURATION, FRAME_STEP, FRAMES


def frame_offset(start_seconds: float) -> int:
    return round(start_seconds / FRAME_STEP)


def num_frames(duration: float) -> int:
    return max(1, int(np.ceil(duration / FRAME_STEP)) + FRAMES)


class Aggregator:
    """Accumulates windows one by one (streaming): speaker count and per-speaker activity over global frames."""

    def __init__(self, duration: float, speakers: int):
        n = num_frames(duration)
        self.count_sum = np.zeros(n, np.float32)
        self.covered = np.zeros(n, np.float32)
        self.activity = np.zeros((n, speakers), np.float32)
        self.duration = duration

    def add(self, start_seconds: float, local: np.ndarray, mapping: np.ndarray) -> None:
        """`local`: (FRAMES × local speakers) 0/1; `mapping`: local speaker → global speaker or -1."""
        o = frame_offset(start_seconds)
        f = slice(o, o + len(local))
        self.count_sum[f] += local.sum(1)
        self.covered[f] += 1
        for s, k in enumerate(mapping):
            if k >= 0:
                self.activity[f, k] += local[:, s]

    def count(self, max_count: int | None = None) -> np.ndarray:
        count = np.rint(self.count_sum / np.maximum(self.covered, 1)).astype(np.int8)
        if max_count is not None:
            np.minimum(count, max_count, out=count)
        return count


def top_speakers(activity: np.ndarray, count: np.ndarray) -> np.ndarray:
    """(frames × speakers) activity, per-frame count → 0/1 (frames × speakers): the `count` most active."""
    out = np.zeros(activity.shape, np.uint8)
    if activity.shape[1] == 0:
        return out
    order = np.argsort(-activity, axis=1, kind="stable")
    for rank in range(min(int(count.max(initial=0)), activity.shape[1])):
        rows = np.flatnonzero(count > rank)
        out[rows, order[rows, rank]] = 1
    out[activity <= 0] = 0  # a speaker not heard in any covering window is never chosen
    return out


def frame_time(i: np.ndarray | int) -> np.ndarray | float:
    """Centre of global frame i in seconds."""
    return i * FRAME_STEP + FRAME_DURATION / 2


def to_segments(binary: np.ndarray, duration: float, min_off: float = 0.0, min_on: float = 0.0
                ) -> list[tuple[int, float, float]]:
    """(frames × speakers) 0/1 → (speaker, start, end) turns sorted by start; same-speaker gaps ≤ `min_off`
    are filled, then turns shorter than `min_on` dropped."""
    out = []
    for k in range(binary.shape[1]):
        x = np.concatenate([[0], binary[:, k].astype(np.int8), [0]])
        edges = np.diff(x)
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        turns: list[list[float]] = []
        for a, b in zip(starts, ends):
            s = float(frame_time(a)) - FRAME_STEP / 2
            e = min(duration, float(frame_time(b - 1)) + FRAME_STEP / 2)
            if turns and s - turns[-1][1] <= min_off:
                turns[-1][1] = e
            else:
                turns.append([max(0.0, s), e])
        out += [(k, round(s, 3), round(e, 3)) for s, e in turns if e - s >= min_on and e > s]
    return sorted(out, key=lambda t: (t[1], t[0]))
