"""v3 speaker counting: which runs (a local speaker's speech between pauses, embedded by CAM++) are one person.

- Only runs long enough to trust shape the clusters (CAM++ separates people well on 2 s pieces, weakly on 0.5 s);
  shorter ones are assigned to the nearest speaker afterwards.
- A cluster is a speaker only if it holds enough runs; a smaller one's runs go to their nearest speaker.
- Speakers whose centroids are close are merged, unless segmentation heard them as two different local speakers
  of one window often enough: then they are two people however alike they sound. A speaker with only a few
  seconds of trusted speech must sound clearly different from its nearest one to stay (else: one voice split).
- Two runs of different local speakers of one window are two people (assignment under that constraint).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot.speech import clustering
from bot.speech.diarization import LocalResult
from bot.speech.embedding import DIM, l2
from bot.speech.segmentation import FRAME_STEP


@dataclass(frozen=True)
class CountingParams:
    train_seconds: float = 1.0  # runs with less speech than this do not shape the clusters
    threshold: float = 0.675  # centroid-linkage distance (euclidean, L2-normalised) where merging stops
    min_cluster_size: int = 6  # training runs; fewer make no speaker of their own
    merge: float = 0.7  # cosine between speaker centroids at which they are one (1.0: never) ...
    conflict: float = 0.3  # ... unless this share of the smaller one's windows holds both as two local speakers
    same: float = 0.85  # cosine at which they are one all the same (one voice that segmentation split in two)
    # A speaker with less training speech than `small_seconds` is kept only if its voice is clearly its own: it merges
    # into its nearest speaker from cosine `merge_small` on (tuning part: AMI DER 11.1 → 9.9, `sample` 3 → 2 of 2
    # speakers, nothing else changed; flat for 3–6 s and 0.5–0.6; 0.4 merges a real 2 s speaker of trn04).
    small_seconds: float = 3.0
    merge_small: float = 0.55
    refine: int = 2  # rounds of: centroids from the assigned runs, then assign again


def speakers(local: LocalResult, p: CountingParams, num: int | None = None, min_n: int | None = None,
             max_n: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """→ (speaker centroids k × DIM, speaker of each slot windows × slots (-1: none yet), training mask)."""
    flat = local.embeddings.reshape(-1, DIM)
    frames = local.speech_frames.reshape(-1)
    embedded = np.isfinite(flat[:, 0]) if len(flat) else np.zeros(0, bool)
    train = embedded & (frames >= p.train_seconds / FRAME_STEP)
    if not train.any():
        train = embedded
    cents = clustering.cluster(flat[train], p.threshold, p.min_cluster_size, num, min_n, max_n)
    mapping = clustering.assign(local.embeddings, cents, local.parents)
    if p.merge < 1.0:
        cents, mapping = _merge(local, flat, train, cents, mapping, p, num, min_n, max_n)
    for _ in range(p.refine):
        cents = clustering.refined(flat, train, mapping.reshape(-1), cents)
        mapping = clustering.assign(local.embeddings, cents, local.parents)
    return cents, mapping, train


def conflicts(mapping: np.ndarray, parents: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(k × k windows where two speakers are held by different local speakers, windows holding each speaker)."""
    both = np.zeros((k, k))
    held = np.zeros(k)
    for m, par in zip(mapping, parents):
        owner = {int(s): int(p) for s, p in zip(m, par) if s >= 0}  # one local speaker per speaker (assign)
        ids = np.array(list(owner), int)
        held[ids] += 1
        if len(ids) > 1:
            local = np.array([owner[s] for s in ids])
            differ = local[:, None] != local[None, :]
            both[np.ix_(ids, ids)] += differ
    return both, held


def _merge(local, flat, train, cents, mapping, p: CountingParams, num, min_n, max_n):
    """Merge the closest pair of speakers while their centroids are at least `merge` alike and segmentation did
    not hear them as two local speakers of one window (in more than `conflict` of the windows of the rarer one),
    or at least `same` alike whatever it heard; always while there are more than `max_n`."""
    lo = num or min_n or 1
    hi = num or max_n or len(cents)
    seconds = local.speech_frames.reshape(-1) * FRAME_STEP
    while len(cents) > lo:
        labels = mapping.reshape(-1)
        cents = clustering.refined(flat, train, labels, cents)
        sims = cents @ cents.T
        np.fill_diagonal(sims, -np.inf)
        if len(cents) <= hi:
            both, held = conflicts(mapping, local.parents, len(cents))
            share = both / np.maximum(np.minimum.outer(held, held), 1)
            sims[(share > p.conflict) & (sims < p.same)] = -np.inf
        small = np.array([seconds[train & (labels == k)].sum() < p.small_seconds for k in range(len(cents))])
        needed = np.where(small[:, None] | small[None, :], min(p.merge, p.merge_small), p.merge)
        a, b = np.unravel_index(int(np.argmax(sims - needed)), sims.shape)
        if sims[a, b] < needed[a, b] and len(cents) <= hi:
            break
        members = train & ((labels == a) | (labels == b))
        cents = cents.copy()
        cents[a] = l2(flat[members].mean(0)) if members.any() else cents[a]
        cents = np.delete(cents, b, axis=0)
        mapping = clustering.assign(local.embeddings, cents, local.parents)
    return cents, mapping
