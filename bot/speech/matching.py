"""Diarized speakers × voiceprints → calibrated confidence → matches. Pure: numbers in, numbers out.

Calibration (fitted by every `python -m bench.engine` run on the TUNING part only: the simulated meetings'
diarized-speaker centroids against enrollment clips of present and absent people and an AMI participant) maps
the cosine similarity `s` of two L2-normalised CAM++ embeddings to

    confidence = 100 / (1 + exp(-(s - midpoint) / scale))        (a `Calibration` per pipeline)

i.e. a logistic regression of "same person" on `s` with balanced classes: 50 means the two hypotheses are
equally likely. The recommended threshold is the middle (rounded to 5) of the range that makes the fewest
errors on those pairs, never under 50. Each diarization pipeline has its own constants, since their speaker
centroids differ: v2 (a centroid made as voiceprints are, from 1.5 s windows of the speaker's own speech; 20
tuning meetings) midpoint 0.761, scale 0.0335, threshold 75 (cos 0.798); v3 matches by the same kind of
centroid and keeps v2's constants. With these constants the report part names no absent person
(bench.engine, report table).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    midpoint: float
    scale: float
    threshold: float  # the recommended `matching.threshold`


CALIBRATIONS = {"v3": Calibration(0.761, 0.0335, 75.0), "v2": Calibration(0.761, 0.0335, 75.0)}
# The embedded engine's default pipeline; v2 stays selectable (and is the benchmark's baseline).
DEFAULT_DIARIZATION = "v3"
CAL_MIDPOINT = CALIBRATIONS[DEFAULT_DIARIZATION].midpoint
RECOMMENDED_THRESHOLD = CALIBRATIONS[DEFAULT_DIARIZATION].threshold


def confidence(similarity: np.ndarray | float, cal: Calibration = CALIBRATIONS[DEFAULT_DIARIZATION]) -> np.ndarray:
    """Cosine similarity → calibrated 0–100 confidence (rounded to 0.1)."""
    s = np.asarray(similarity, dtype=np.float64)
    return np.round(100.0 / (1.0 + np.exp(-(s - cal.midpoint) / cal.scale)), 1)


def similarity_matrix(speakers: np.ndarray, voiceprints: np.ndarray) -> np.ndarray:
    """Cosine similarity (speakers × voiceprints) of L2-normalised rows."""
    if len(speakers) == 0 or len(voiceprints) == 0:
        return np.zeros((len(speakers), len(voiceprints)))
    return np.asarray(speakers, np.float64) @ np.asarray(voiceprints, np.float64).T


@dataclass(frozen=True)
class Assignment:
    """For each speaker index, the matched voiceprint index or None."""

    matches: list[int | None]


def assign(conf: np.ndarray, threshold: float = 0.0, exclusive: bool = True) -> Assignment:
    """Match speakers (rows) to voiceprints (columns) on confidence.

    Exclusive: an optimal one-to-one assignment (Hungarian, maximising total confidence), then pairs under
    `threshold` are dropped — so a voiceprint names at most one speaker. Not exclusive: each speaker takes
    its best voiceprint if that reaches `threshold`. A match needs confidence ≥ threshold (0 always matches,
    as in pyannoteAI); a NaN (no score for that pair) never matches.
    """
    n_spk = conf.shape[0] if conf.ndim == 2 else 0
    matches: list[int | None] = [None] * n_spk
    if n_spk == 0 or conf.shape[1] == 0:
        return Assignment(matches)
    known = ~np.isnan(conf)
    scores = np.where(known, conf, -1.0)  # below any confidence: chosen only when nothing else is left
    if exclusive:
        from scipy.optimize import linear_sum_assignment

        pairs = zip(*linear_sum_assignment(scores, maximize=True))
    else:
        pairs = enumerate(np.argmax(scores, axis=1))
    for r, c in pairs:
        if known[r, c] and conf[r, c] >= threshold:
            matches[int(r)] = int(c)
    return Assignment(matches)


def best_per_group(conf: np.ndarray, groups: list[int], n_groups: int) -> np.ndarray:
    """speakers × groups from speakers × voiceprints: a speaker's confidence for a group (one person's
    voiceprints) is its best over the group's columns, NaN where it has none. `assign` on the result matches
    people, not voiceprints: a person with several voiceprints still names at most one speaker."""
    out = np.full((conf.shape[0] if conf.ndim == 2 else 0, n_groups), np.nan)
    for column, group in enumerate(groups):
        out[:, group] = np.fmax(out[:, group], conf[:, column])
    return out


def unambiguous(best: np.ndarray, chosen: list[int | None], threshold: float) -> list[int | None]:
    """`chosen` (speaker → person, from `assign` on `best`) without the guesses: a speaker keeps its person only
    when no other person it also matches at or above `threshold` is left without a speaker of their own. Two
    people whose voices both fit one speaker are a guess between them, however the scores rank them: through a
    phone line, whose sound every voiceprint made there shares, different people's confidences crowd at the top
    (bench.voiceprints). A threshold of 0 (match always, as in pyannoteAI) keeps `chosen` as it is."""
    if threshold <= 0:
        return list(chosen)
    out = list(chosen)
    for speaker, person in enumerate(chosen):
        if person is None:
            continue
        taken = {p for other, p in enumerate(chosen) if other != speaker and p is not None}
        rivals = [q for q in range(best.shape[1]) if q != person and q not in taken]
        if any(best[speaker, q] >= threshold for q in rivals if not np.isnan(best[speaker, q])):
            out[speaker] = None
    return out


def near_matches(best: np.ndarray, chosen: list[int | None], floor: float, threshold: float, *,
                 unambiguous_only: bool = True) -> list[int | None]:
    """For each speaker left unnamed, the person it probably is ("Is this you?"), or None: the speaker's best
    confidence over everyone is in [floor, threshold), and exclusively by person among the people nobody was
    named as (a person is asked about one speaker at most). A speaker that reached the threshold for someone
    and still went unnamed was refused as a guess or lost to another speaker: it is never a near match.
    `unambiguous_only` also leaves out a speaker that fits another of those people at or above `floor` too
    (a guess between two people, as in `unambiguous`). A floor of 0, or one not under the threshold, is off."""
    out: list[int | None] = [None] * len(chosen)
    if floor <= 0 or floor >= threshold or best.ndim != 2 or best.shape[1] == 0:
        return out
    named = {p for p in chosen if p is not None}
    top = np.where(np.isnan(best), -1.0, best).max(axis=1)
    rows = [i for i, p in enumerate(chosen) if p is None and floor <= top[i] < threshold]
    cols = [q for q in range(best.shape[1]) if q not in named]
    if not rows or not cols:
        return out
    band = best[np.ix_(rows, cols)]
    picked = assign(band, floor, exclusive=True).matches
    if unambiguous_only:
        picked = unambiguous(band, picked, floor)
    for row, col in zip(rows, picked):
        if col is not None:
            out[row] = cols[col]
    return out
