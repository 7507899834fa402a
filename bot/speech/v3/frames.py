"""v3 reconstruction: speech and overlap from segmentation-3.0's probabilities, window-averaged counts, and a
speaker for every piece of speech.

- A window's frame is speech where 1 − P(silence) passes `speech` (not only where silence is not the most likely
  class: that misses quiet speech), and there holds two local speakers where P(two) passes `pair`, else one.
- The per-frame number of speakers is that count averaged over the windows covering the frame, as pyannote's
  pipeline counts; each frame keeps its `count` most active global speakers.
- A local speaker's frames go to its nearest run (runs are what was embedded and clustered). A run too short to
  embed takes the global speaker most active around it in the other windows, never one that another local
  speaker of its window holds: short overlapped pieces — the second voice — are kept instead of dropped.
"""
from __future__ import annotations

import numpy as np

from bot.speech.reconstruction import frame_offset, num_frames
from bot.speech.segmentation import MAPPING


def local_activity(probs: np.ndarray, speech: float, pair: float) -> np.ndarray:
    """(windows, frames, 7) powerset probabilities → (windows, frames, 3) 0/1 local speakers: speech where
    1 − P(silence) ≥ `speech`; there the most likely pair of speakers where P(two speakers) ≥ `pair`, else the
    most likely single speaker."""
    p = probs.astype(np.float32)
    single = 1 + np.argmax(p[..., 1:4], axis=-1)
    both = 4 + np.argmax(p[..., 4:7], axis=-1)
    classes = np.where(p[..., 4:7].sum(-1) >= pair, both, single)
    classes[1.0 - p[..., 0] < speech] = 0
    return MAPPING[classes]


def slot_activity(local: np.ndarray, runs: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Each local speaker's active frames → the slot (run) of that speaker nearest in time: (windows, frames,
    slots) 0/1. Frames of a local speaker that has no run in the window are left out."""
    out = np.zeros(runs.shape, np.uint8)
    for w, k in zip(*np.nonzero(local.any(1))):
        slots = np.flatnonzero(parents[w] == k)
        frames = np.flatnonzero(local[w, :, k])
        if not len(slots):
            continue
        dist = np.full((len(frames), len(slots)), np.inf)
        for i, j in enumerate(slots):
            on = np.flatnonzero(runs[w, :, j])
            if len(on):
                dist[:, i] = np.maximum(0, np.maximum(on[0] - frames, frames - on[-1]))
        out[w, frames, slots[np.argmin(dist, axis=1)]] = 1
    return out


class Frames:
    """Global frame grid: averaged speaker count and per-speaker activity, accumulated window by window."""

    def __init__(self, duration: float, speakers: int):
        n = num_frames(duration)
        self.count_sum = np.zeros(n, np.float32)
        self.covered = np.zeros(n, np.float32)
        self.activity = np.zeros((n, speakers), np.float32)

    def add_count(self, start: float, local: np.ndarray) -> None:
        o = frame_offset(start)
        self.count_sum[o:o + len(local)] += local.sum(1)
        self.covered[o:o + len(local)] += 1

    def add_activity(self, start: float, slots: np.ndarray, mapping: np.ndarray) -> None:
        o = frame_offset(start)
        for j in np.flatnonzero(mapping >= 0):
            self.activity[o:o + len(slots), mapping[j]] += slots[:, j]

    def count(self, one: float, two: float) -> np.ndarray:
        """Frames whose averaged count reaches `one` hold a speaker, `two` two of them."""
        avg = self.count_sum / np.maximum(self.covered, 1)
        return ((avg >= one).astype(np.int8) + (avg >= two)).astype(np.int8)


def fill(starts: np.ndarray, slots: np.ndarray, mapping: np.ndarray, parents: np.ndarray, grid: Frames,
         reach: int) -> np.ndarray:
    """Slots with speech but no speaker (too short to embed) take the global speaker most active within `reach`
    frames of them in the grid (the other windows), except those held by another local speaker of their window;
    none when no such speaker is heard there."""
    out = mapping.copy()
    active = slots.any(1)
    for w, j in zip(*np.nonzero((mapping < 0) & active)):
        frames = np.flatnonzero(slots[w, :, j]) + frame_offset(starts[w])
        lo, hi = max(0, frames[0] - reach), frames[-1] + 1 + reach
        score = grid.activity[lo:hi].sum(0) / max(1.0, float(grid.covered[lo:hi].sum()))
        held = out[w][(parents[w] != parents[w, j]) & (out[w] >= 0)]
        score[held] = 0.0
        if len(score) and score.max() > 0:
            out[w, j] = int(np.argmax(score))
    return out
