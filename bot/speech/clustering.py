"""Global clustering of (window, local speaker) embeddings, pyannote-style, with speaker-count constraints.

Centroid-linkage agglomerative clustering of L2-normalised embeddings cut at a distance threshold; clusters
smaller than a minimum size are not speakers of their own and join the nearest large one. Then every
(window, local speaker) is assigned to a speaker under the constraint that two local speakers of one window
are two different people (Hungarian per window).
"""
from __future__ import annotations

import numpy as np

from bot.speech.embedding import l2

MAX_TRAIN = 3000  # centroid linkage needs O(n²) memory: beyond this, cluster a uniform subsample


def _large_clusters(labels: np.ndarray, min_size: int) -> list[int]:
    ids, sizes = np.unique(labels, return_counts=True)
    order = np.argsort(-sizes, kind="stable")
    return [int(ids[i]) for i in order if sizes[i] >= min_size]


def centroids(x: np.ndarray, labels: np.ndarray, keep: list[int]) -> np.ndarray:
    return np.stack([l2(x[labels == k].mean(0)) for k in keep])


def cluster(x: np.ndarray, threshold: float, min_cluster_size: int, num: int | None = None,
            min_n: int | None = None, max_n: int | None = None) -> np.ndarray:
    """L2-normalised embeddings (n × d) → speaker centroids (k × d), k within the constraints.

    `threshold` is the euclidean distance between cluster centroids at which merging stops; `min_cluster_size`
    shrinks to a tenth of n on short recordings so that a 30 s meeting can still hold four people.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    n = len(x)
    if n == 0:
        return np.zeros((0, x.shape[1] if x.ndim == 2 else 0), np.float32)
    lo = num or min_n or 1
    hi = num or max_n or n
    if n == 1 or hi == 1:
        return l2(x.mean(0, keepdims=True))
    if n > MAX_TRAIN:
        x = x[np.linspace(0, n - 1, MAX_TRAIN).astype(int)]
        n = MAX_TRAIN
    min_size = max(1, min(min_cluster_size, round(0.1 * n)))
    tree = linkage(x, method="centroid", metric="euclidean")
    labels = fcluster(tree, t=threshold, criterion="distance")
    large = _large_clusters(labels, min_size)
    if not large:
        large = _large_clusters(labels, 1)[:1]
    if not lo <= len(large) <= hi:
        target = min(max(len(large), lo), hi, n)
        # Walk the dendrogram to the cut that gives `target` large clusters (or as close as it gets).
        for k in range(target, n + 1):
            labels = fcluster(tree, t=k, criterion="maxclust")
            large = _large_clusters(labels, min_size if k < n else 1)
            if len(large) >= target:
                break
        large = large[:target]
    return centroids(x, labels, large)


def refined(x: np.ndarray, train: np.ndarray, labels: np.ndarray, cents: np.ndarray) -> np.ndarray:
    """Centroids recomputed from the training pairs each speaker was assigned (the old one if none)."""
    out = cents.copy()
    for k in range(len(cents)):
        members = train & (labels == k)
        if members.any():
            out[k] = l2(x[members].mean(0))
    return out


def assign(embeddings: np.ndarray, cents: np.ndarray, parents: np.ndarray | None = None) -> np.ndarray:
    """(windows × slots × d) embeddings, NaN rows for slots not embedded → (windows × slots) speaker index, -1
    where none. Slots of two different local speakers (`parents`, windows × slots; default: every slot its own)
    are two different people; runs of one local speaker may be anyone. Per window, the surest slot chooses
    first (greedy on cosine similarity)."""
    out = np.full(embeddings.shape[:2], -1, int)
    if len(cents) == 0:
        return out
    if parents is None:
        parents = np.broadcast_to(np.arange(embeddings.shape[1]), embeddings.shape[:2])
    sims = np.nan_to_num(embeddings @ cents.T, nan=-np.inf)  # windows × slots × k
    for c in range(len(embeddings)):
        valid = np.flatnonzero(np.isfinite(sims[c, :, 0]))
        taken: dict[int, int] = {}  # speaker → local speaker holding it
        for s in valid[np.argsort(-sims[c, valid].max(1), kind="stable")]:
            for k in np.argsort(-sims[c, s], kind="stable"):
                if taken.get(int(k), parents[c, s]) == parents[c, s]:
                    out[c, s] = k
                    taken[int(k)] = parents[c, s]
                    break
    return out


def inherit(mapping: np.ndarray, parents: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Slots too short to embed take the speaker of their local speaker's longest assigned run in the window."""
    out = mapping.copy()
    for c, s in zip(*np.nonzero((mapping < 0) & (parents >= 0))):
        siblings = np.flatnonzero((parents[c] == parents[c, s]) & (mapping[c] >= 0))
        if len(siblings):
            out[c, s] = mapping[c, siblings[np.argmax(frames[c, siblings])]]
    return out
