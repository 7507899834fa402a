"""The shipped engine as the benchmarks run it: `VoiceId` (its voiceprints and diarization through
`bot.speech.tasks`), shared by bench.engine's rows and the several-voiceprints and "Is this you?" cases."""
from __future__ import annotations

import os

import numpy as np


def threads() -> int | None:
    """Torch threads for every system (`--threads`, passed to the speed children through the environment);
    None = the engine's default (all cores). On a machine shared with other work, 1 avoids OpenMP spinning."""
    value = os.environ.get("BENCH_THREADS")
    return int(value) if value else None


class VoiceId:
    """Our engine; `diarization` picks v3 (bot.speech.v3) or v2 (bot.speech.diarization).
    `anchors`: v3 is given the meeting's voiceprints; `hint`: it is told the true number of speakers."""

    hint = False
    anchors = True

    def __init__(self, diarization: str = "v2", preload: bool = True):
        from bot.speech.windows import SpeakerModels

        self.models = SpeakerModels(threads=threads(), diarization=diarization, preload=preload)

    def voiceprint(self, clip: np.ndarray) -> np.ndarray:
        from bot.speech import tasks, voiceprint
        from bot.speech.audio import Audio

        out = tasks.make_voiceprint(self.models, Audio(clip))
        return voiceprint.decode(out.voiceprint).vector

    def diarize(self, samples: np.ndarray, vectors: np.ndarray, num: int | None = None):
        """(segments, speakers, similarity speakers × vectors)."""
        from bot.errors import MediaError
        from bot.speech import tasks
        from bot.speech.audio import Audio

        try:
            diar, sims = tasks.diarize_and_compare(self.models, Audio(samples), vectors,
                                                   num if self.hint else None, use_anchors=self.anchors)
        except MediaError:
            return [], [], np.zeros((0, len(vectors)))
        return diar.segments, diar.speakers, sims
