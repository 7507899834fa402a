"""Speaker diarization pipeline: sliding-window segmentation → local-speaker embeddings → global clustering →
reconstruction, in the manner of pyannote's speaker-diarization pipeline, on CPU with our models.

Audio is consumed as a stream of sample blocks and only about one window is held at a time; what is kept is
small (per window: 589 × `slots` activity bits and as many embeddings), so a 4-hour recording fits in memory.
All tunable constants are fields of `DiarizationParams` (chosen on the benchmark's tuning part).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from bot.speech import clustering, reconstruction
from bot.speech.audio import block_stream
from bot.speech.embedding import DIM, Embedder, l2, one_torch_thread, speaker_masks
from bot.speech.segmentation import (
    FRAME_STEP,
    SAMPLE_RATE,
    SegmentationModel,
    powerset_to_multilabel,
    sliding_windows,
    speaker_runs,
)

Progress = Callable[[float], None]
FBANK_FRAMES_PER_SECOND = 100


@dataclass(frozen=True)
class DiarizationParams:
    """The pipeline's constants (seconds unless said otherwise)."""

    step: float = 2.5  # between 10 s windows
    batch: int = 16  # windows per segmentation call (and per fbank span); 16 leaves the two threads idle less than 8
    clean_seconds: float = 1.0  # embed a speaker from frames where they talk alone if at least this remains
    embed_seconds: float = 0.3  # a run with less speech than this is not embedded (it takes its speaker's)
    max_embed_seconds: float = 4.5  # embed at most this much of a run's speech (mid-window); 0: all
    train_seconds: float = 1.0  # only runs with this much speech shape the clusters
    threshold: float = 0.675  # centroid-linkage distance (euclidean, L2-normalised) where merging stops
    min_cluster_size: int = 6  # runs; fewer make no speaker of their own
    refine: int = 2  # rounds of: centroids from the assigned pairs, then assign again
    min_duration_off: float = 0.0  # same-speaker gaps up to this are filled
    min_duration_on: float = 0.0  # shorter turns are dropped
    run_pause: float = 0.25  # a local speaker's speech is cut into runs at pauses longer than this
    slots: int = 8  # runs kept per window (beyond, a speaker's runs across the shortest pauses are joined)


@dataclass
class LocalResult:
    """What the streaming pass keeps: per window its start, and per slot (a run of one local speaker's speech)
    its activity, local speaker and embedding."""

    starts: np.ndarray  # seconds, (windows,)
    activity: np.ndarray  # (windows, FRAMES, slots) uint8
    embeddings: np.ndarray  # (windows, slots, DIM) float32, NaN rows where not embedded
    speech_frames: np.ndarray  # (windows, slots) frames used for each embedding
    parents: np.ndarray  # (windows, slots) int8: the run's local speaker, -1 for an empty slot
    duration: float
    peak: float
    probabilities: np.ndarray | None = None  # (windows, FRAMES, 7) float16 powerset probabilities, when kept


@dataclass
class DiarizationResult:
    """Turns (speaker, start, end) sorted by start; `segments` may overlap, `exclusive` never does.
    Centroids are L2-normalised, one per speaker, speakers named SPEAKER_00.. by talk time."""

    segments: list[tuple[str, float, float]] = field(default_factory=list)
    exclusive: list[tuple[str, float, float]] = field(default_factory=list)
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    speech: float = 0.0  # seconds with at least one speaker
    overlap: float = 0.0  # seconds with two or more
    duration: float = 0.0
    peak: float = 0.0

    @property
    def speakers(self) -> list[str]:
        return list(self.centroids)


def _blocks(audio: np.ndarray | Iterable[np.ndarray]):
    return block_stream(audio) if isinstance(audio, np.ndarray) else audio


class SpeakerDiarization:
    """Warm models + parameters; call it on samples (or a stream of sample blocks) at 16 kHz mono."""

    def __init__(self, params: DiarizationParams | None = None, segmentation: SegmentationModel | None = None,
                 embedder: Embedder | None = None, threads: int = 1):
        self.params = params or DiarizationParams()
        self.segmentation = segmentation or SegmentationModel()
        self.embedder = embedder or Embedder()
        self.threads = max(1, threads)
        self.keep_probabilities = False  # v3 reconstructs from them
        self._pool = None
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="diarization")
            if isinstance(self.embedder, Embedder):
                self.embedder.map = self._pool.map

    def __call__(self, audio, num: int | None = None, min_n: int | None = None, max_n: int | None = None,
                 progress: Progress | None = None, total_samples: int | None = None,
                 anchors: np.ndarray | None = None) -> DiarizationResult:
        if total_samples is None and isinstance(audio, np.ndarray):
            total_samples = len(audio)
        report = progress or (lambda f: None)
        local = self.local(audio, lambda f: report(0.9 * f), total_samples)
        out = self.cluster(local, num, min_n, max_n, anchors)
        report(1.0)
        return out

    def local(self, audio, progress: Progress | None = None, total_samples: int | None = None) -> LocalResult:
        """The streaming pass: segmentation and embeddings of every window.

        Both models run on one thread per call (see `bot.speech.onnx`) and `threads` calls at once (CAM++ on
        several local speakers, segmentation on parts of a batch): their many small operators scale poorly inside
        one call. Torch, which computes the fbank in those same threads, is held at one thread too: OpenMP's
        spinning threads slow down many-fold when another process takes a core."""
        if self._pool is None:
            return self._local(audio, progress, total_samples)
        with one_torch_thread():
            return self._local(audio, progress, total_samples)

    def _segment(self, windows: np.ndarray) -> np.ndarray:
        if self._pool is None or len(windows) < 2:
            return self.segmentation(windows)
        parts = np.array_split(windows, min(self.threads, len(windows)))
        return np.concatenate(list(self._pool.map(self.segmentation, parts)))

    def _local(self, audio, progress: Progress | None = None, total_samples: int | None = None) -> LocalResult:
        p = self.params
        step = int(p.step * SAMPLE_RATE)
        expected = max(1, (total_samples or 0) // step + 1)
        starts, acts, embs, used, parents, probs = [], [], [], [], [], []
        batch: list[tuple[int, np.ndarray]] = []
        peak, total = 0.0, 0

        def blocks():
            nonlocal peak, total
            for block in _blocks(audio):
                if len(block):
                    peak = max(peak, float(np.max(np.abs(block))))
                    total += len(block)
                yield block

        def flush():
            windows = np.stack([w for _, w in batch])
            logp = self._segment(windows)
            if self.keep_probabilities:
                probs.extend(np.exp(logp).astype(np.float16))
            local = powerset_to_multilabel(logp)
            runs = [speaker_runs(act, int(p.run_pause / FRAME_STEP), p.slots) for act in local]
            activity = np.stack([r for r, _ in runs])
            min_clean = int(p.clean_seconds / FRAME_STEP)
            masks = np.stack([speaker_masks(r, min_clean, act) for (r, _), act in zip(runs, local)])
            # Consecutive windows on the step grid: their union is one span, whose fbank is computed once.
            limits = (int(p.embed_seconds * FBANK_FRAMES_PER_SECOND),
                      int(p.max_embed_seconds * FBANK_FRAMES_PER_SECOND) or None)
            if step <= len(windows[0]):
                first = batch[0][0]
                span = np.concatenate([windows[0]] + [w[-step:] for _, w in batch[1:]])
                embs.extend(self.embedder.windows(span, [s - first for s, _ in batch], masks, *limits))
            else:
                embs.extend(self.embedder.windows(w, [0], m[None], *limits)[0] for w, m in zip(windows, masks))
            for (start, _), act, mask, (_, parent) in zip(batch, activity, masks, runs):
                parents.append(parent)
                used.append(mask.sum(0))
                starts.append(start / SAMPLE_RATE)
                acts.append(act)
            batch.clear()
            if progress:
                progress(min(1.0, len(starts) / expected))

        for start, window in sliding_windows(blocks(), step):
            batch.append((start, window.copy()))
            if len(batch) == p.batch:
                flush()
        if batch:
            flush()
        return LocalResult(
            starts=np.array(starts, np.float64),
            activity=np.stack(acts) if acts else np.zeros((0, 0, p.slots), np.uint8),
            embeddings=np.stack(embs) if embs else np.zeros((0, p.slots, DIM), np.float32),
            speech_frames=np.stack(used) if used else np.zeros((0, p.slots), int),
            parents=np.stack(parents) if parents else np.zeros((0, p.slots), np.int8),
            duration=total / SAMPLE_RATE, peak=peak,
            probabilities=np.stack(probs) if probs else None)

    def cluster(self, local: LocalResult, num: int | None = None, min_n: int | None = None,
                max_n: int | None = None, anchors: np.ndarray | None = None) -> DiarizationResult:
        """Global clustering and reconstruction (no audio needed: cheap to re-run with other parameters).
        v2 does not use `anchors` (the enrolled voices; v3 does)."""
        p = self.params
        flat = local.embeddings.reshape(-1, DIM)
        frames = local.speech_frames.reshape(-1)
        embedded = np.isfinite(flat[:, 0]) if len(flat) else np.zeros(0, bool)
        train = embedded & (frames >= p.train_seconds / FRAME_STEP)
        if not train.any():
            train = embedded
        cents = clustering.cluster(flat[train], p.threshold, p.min_cluster_size, num, min_n, max_n)
        mapping = clustering.assign(local.embeddings, cents, local.parents)
        for _ in range(p.refine):
            cents = clustering.refined(flat, train, mapping.reshape(-1), cents)
            mapping = clustering.assign(local.embeddings, cents, local.parents)
        mapping = clustering.inherit(mapping, local.parents, local.activity.sum(1))
        agg = reconstruction.Aggregator(local.duration, len(cents))
        for start, act, m in zip(local.starts, local.activity, mapping):
            agg.add(start, act, m)
        count = agg.count()
        return result(local, agg.activity, count, mapping, cents, train, p.min_duration_off, p.min_duration_on)


def result(local: LocalResult, activity: np.ndarray, count: np.ndarray, mapping: np.ndarray, cents: np.ndarray,
           train: np.ndarray, min_off: float = 0.0, min_on: float = 0.0) -> DiarizationResult:
    """Global frame activity (frames × speakers) and count → turns, exclusive turns, centroids, named by talk time.

    A speaker's centroid is the mean of its training pairs' embeddings (of any pair assigned when it has none)."""
    binary = reconstruction.top_speakers(activity, count)
    exclusive = reconstruction.top_speakers(activity, np.minimum(count, 1))
    turns = reconstruction.to_segments(binary, local.duration, min_off, min_on)
    only = reconstruction.to_segments(exclusive, local.duration, min_off, min_on)
    talk: dict[int, float] = {}
    for k, s, e in turns:
        talk[k] = talk.get(k, 0.0) + e - s
    order = sorted(talk, key=lambda k: -talk[k])
    names = {k: f"SPEAKER_{i:02d}" for i, k in enumerate(order)}
    flat = local.embeddings.reshape(-1, DIM)
    embedded = np.isfinite(flat[:, 0]) if len(flat) else np.zeros(0, bool)
    flat_map = mapping.reshape(-1)
    centroids = {}
    for k in order:
        members = (flat_map == k) & train
        if not members.any():
            members = (flat_map == k) & embedded
        centroids[names[k]] = l2(flat[members].mean(0)) if members.any() else cents[k]
    layers = binary.sum(1)
    return DiarizationResult(
        segments=[(names[k], s, e) for k, s, e in turns if k in names],
        exclusive=[(names[k], s, e) for k, s, e in only if k in names],
        centroids=centroids,
        speech=float(np.count_nonzero(layers >= 1) * FRAME_STEP),
        overlap=float(np.count_nonzero(layers >= 2) * FRAME_STEP),
        duration=local.duration, peak=local.peak)
