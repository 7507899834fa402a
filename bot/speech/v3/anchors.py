"""v3 anchors: the enrolled voices (the identify job's voiceprints) correct the speaker count.

Clustering alone must guess whether two groups of runs are one voice heard differently or two similar voices;
a voiceprint is a clean reference of one person. So, when a job has voiceprints:
- two speakers whose runs both match one voiceprint strongly (and no other better) are one person: merged;
- a speaker whose runs split between two voiceprints, each holding a real share of its speech, is two people:
  the runs nearer the second voiceprint become a speaker of their own.
Anchors never create a speaker from a voiceprint alone: an absent person's voiceprint matches no runs, so it
changes nothing (the benchmark counts segments naming an absent person).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot.speech import clustering
from bot.speech.diarization import LocalResult
from bot.speech.embedding import DIM, l2
from bot.speech.segmentation import FRAME_STEP


@dataclass(frozen=True)
class AnchorParams:
    merge: float = 0.75  # cosine of a speaker's centroid to a voiceprint: two speakers both this close are one
    claim: float = 0.55  # cosine of a run to a voiceprint for it to count as that person's
    margin: float = 0.05  # ... and at least this much closer to it than to any other voiceprint
    share: float = 0.25  # a split needs each of two voiceprints to claim this share of a speaker's training speech
    min_seconds: float = 8.0  # ... and this much speech each


def anchored(local: LocalResult, cents: np.ndarray, mapping: np.ndarray, train: np.ndarray, anchors: np.ndarray,
             p: AnchorParams, min_n: int | None = None, max_n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, mapping) corrected by the voiceprints `anchors` (m × DIM), within `min_n`/`max_n`."""
    flat = local.embeddings.reshape(-1, DIM)
    seconds = local.speech_frames.reshape(-1) * FRAME_STEP
    anchors = l2(np.asarray(anchors, np.float32))
    labels = mapping.reshape(-1).copy()
    labels = _split(flat, seconds, train, labels, anchors, p, max_n)
    labels = _merge(flat, train, labels, anchors, p, min_n)
    keep = [k for k in np.unique(labels[train & (labels >= 0)])]
    if not keep:
        return cents, mapping
    new = np.stack([l2(flat[train & (labels == k)].mean(0)) for k in keep])
    mapping = clustering.assign(local.embeddings, new, local.parents)
    return new, mapping


def _claims(x: np.ndarray, anchors: np.ndarray, p: AnchorParams) -> np.ndarray:
    """For each embedding, the voiceprint that claims it (-1: none)."""
    sims = x @ anchors.T
    best = np.argmax(sims, axis=1)
    top = sims[np.arange(len(x)), best]
    second = np.sort(sims, axis=1)[:, -2] if anchors.shape[0] > 1 else np.full(len(x), -1.0)
    return np.where((top >= p.claim) & (top - second >= p.margin), best, -1)


def _split(flat, seconds, train, labels, anchors, p: AnchorParams, max_n: int | None) -> np.ndarray:
    if anchors.shape[0] < 2:
        return labels
    claims = np.full(len(flat), -1)
    claims[train] = _claims(flat[train], anchors, p)
    for k in np.unique(labels[train & (labels >= 0)]):
        if max_n is not None and len(np.unique(labels[labels >= 0])) >= max_n:
            break
        members = train & (labels == k)
        total = seconds[members].sum()
        held = {int(j): seconds[members & (claims == j)].sum() for j in np.unique(claims[members]) if j >= 0}
        strong = sorted((j for j, s in held.items() if s >= max(p.share * total, p.min_seconds)),
                        key=lambda j: -held[j])
        if len(strong) >= 2:
            labels = labels.copy()
            new = labels.max() + 1
            for j in strong[1:]:
                labels[(labels == k) & (claims == j)] = new
                new += 1
    return labels


def _merge(flat, train, labels, anchors, p: AnchorParams, min_n: int | None) -> np.ndarray:
    ids = [int(k) for k in np.unique(labels[train & (labels >= 0)])]
    if len(ids) < 2:
        return labels
    cents = np.stack([l2(flat[train & (labels == k)].mean(0)) for k in ids])
    sims = cents @ anchors.T
    best = np.argmax(sims, axis=1)
    labels = labels.copy()
    count = len(ids)
    for j in range(anchors.shape[0]):
        group = [ids[i] for i in np.flatnonzero((best == j) & (sims[:, j] >= p.merge))]
        for k in group[1:]:
            if min_n is not None and count <= min_n:
                break
            labels[labels == k] = group[0]
            count -= 1
    return labels
