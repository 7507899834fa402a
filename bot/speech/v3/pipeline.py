"""The v3 pipeline: a class with typed parameters whose stages are functions, in the manner of pyannote's
pipelines; its output is v2's `DiarizationResult` (turns, exclusive turns, centroids), served in the pyannoteAI
schema by `bot.speech.tasks`.

Stages after v2's streaming pass (which here also keeps segmentation-3.0's powerset probabilities):
1. `counting.speakers`: how many people and which run is whom (item 2 of issue 21);
2. `anchors.anchored`: the enrolled voices correct that, when the job has voiceprints (item 3);
3. `frames`: speech and overlap from the probabilities, a speaker for every piece (item 1).
Every constant is a field of `V3Params`, chosen on the benchmark's tuning part.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bot.speech.diarization import (
    DiarizationParams,
    DiarizationResult,
    LocalResult,
    SpeakerDiarization,
    result,
)
from bot.speech.segmentation import FRAME_STEP
from bot.speech.v3 import anchors as anchoring
from bot.speech.v3 import counting, frames


@dataclass(frozen=True)
class V3Params:
    """v3's constants after the streaming pass (seconds unless said otherwise)."""

    speech: float = 0.4  # a window's frame is speech where 1 − P(silence) reaches this
    pair: float = 0.4  # ... and two local speakers talk where P(two speakers) reaches this
    one: float = 0.5  # a global frame holds a speaker where the window-averaged count reaches this
    two: float = 1.5  # ... and two speakers where it reaches this
    reach: float = 0.5  # a run too short to embed takes the speaker most active this close to it
    counting: counting.CountingParams = field(default_factory=counting.CountingParams)
    anchors: anchoring.AnchorParams = field(default_factory=anchoring.AnchorParams)


class SpeakerDiarizationV3(SpeakerDiarization):
    """v2's warm models and streaming pass; v3's clustering and reconstruction."""

    def __init__(self, params: V3Params | None = None, streaming: DiarizationParams | None = None,
                 segmentation=None, embedder=None, threads: int = 1):
        super().__init__(streaming, segmentation, embedder, threads)
        self.v3 = params or V3Params()
        self.keep_probabilities = True

    def cluster(self, local: LocalResult, num: int | None = None, min_n: int | None = None,
                max_n: int | None = None, anchors: np.ndarray | None = None) -> DiarizationResult:
        return diarize(local, self.v3, num, min_n, max_n, anchors)


def diarize(local: LocalResult, p: V3Params, num: int | None = None, min_n: int | None = None,
            max_n: int | None = None, anchors: np.ndarray | None = None) -> DiarizationResult:
    """The stages after the streaming pass (pure: cheap to re-run on a kept `LocalResult`)."""
    cents, mapping, train = counting.speakers(local, p.counting, num, min_n, max_n)
    if anchors is not None and len(anchors) and num is None:
        cents, mapping = anchoring.anchored(local, cents, mapping, train, anchors, p.anchors, min_n, max_n)
    return reconstruct(local, p, cents, mapping, train)


def reconstruct(local: LocalResult, p: V3Params, cents: np.ndarray, mapping: np.ndarray,
                train: np.ndarray) -> DiarizationResult:
    if local.probabilities is None:
        raise ValueError("v3 reconstructs from the segmentation probabilities: keep them in the streaming pass")
    act = frames.local_activity(local.probabilities, p.speech, p.pair)
    slots = frames.slot_activity(act, local.activity, local.parents)
    grid = frames.Frames(local.duration, len(cents))
    for start, a, s, m in zip(local.starts, act, slots, mapping):
        grid.add_count(start, a)
        grid.add_activity(start, s, m)
    filled = frames.fill(local.starts, slots, mapping, local.parents, grid, round(p.reach / FRAME_STEP))
    for w in np.flatnonzero((filled != mapping).any(1)):
        new = np.where(filled[w] != mapping[w], filled[w], -1)
        grid.add_activity(local.starts[w], slots[w], new)
    return result(local, grid.activity, grid.count(p.one, p.two), filled, cents, train)
