""""Is this you?": a speaker left unknown whose best match falls just under the threshold
(`NEAR_MATCH_FLOOR` ≤ confidence < threshold) is named to nobody in the channel; the person it probably is —
a member of the recording's channel at that moment — is asked privately, by DM, with "Yes, that's me" / "No".

Yes is a "This is me" claim (`bot.services.claims.correct`: shown as a claim, the summary edited in place, the
chart redrawn); No is remembered for that recording, so they are never asked about it again. Nothing in the
channel, the summary or anyone else's view says a near match existed. Every answer is checked against the
stored question (its recording, speaker and person), never against what the button carries beyond its id.
At most once: the questions are stored under the recording's lease and each is marked sent before its DM.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot.schema import IdentifyOutput
from bot.speech import matching


@dataclass(frozen=True)
class NearMatch:
    speaker: str  # the diarization label
    user_id: str  # the person it probably is
    confidence: float


def near_matches_of(result: dict | None, floor: float, threshold: float, *,
                    unambiguous_only: bool = True) -> list[NearMatch]:
    """The near matches of a stored (per-person: `bot.services.voiceprints.by_person`) identify result, the same
    for every engine: from each speaker's confidence map over people (`matching.near_matches`; the benchmark
    also measures it without `unambiguous_only`)."""
    if not result or floor <= 0 or "voiceprints" not in result:
        return []
    out = IdentifyOutput.model_validate(result)
    people = sorted({p for m in out.voiceprints for p in m.confidence})
    if not people:
        return []
    speakers = [m.speaker for m in out.voiceprints]
    best = np.array([[m.confidence.get(p, np.nan) for p in people] for m in out.voiceprints], dtype=np.float64)
    chosen = [people.index(m.match) if m.match in people else None for m in out.voiceprints]
    if any(m.match and m.match not in people for m in out.voiceprints):
        return []  # a match without a score: an engine without confidence maps asks nobody
    picked = matching.near_matches(best, chosen, floor, threshold, unambiguous_only=unambiguous_only)
    return [NearMatch(speakers[i], people[p], float(best[i, p])) for i, p in enumerate(picked) if p is not None]
