""""Is this you?" on the bench: `python -m bench.engine --near-matches` (issue 20, item 2).

A speaker left unknown whose best confidence falls in [floor, threshold) gets a private question to the person
it probably is. Each meeting (bench.meetings: four present, three of them enrolled, two enrolled people absent)
is diarized once by the shipped pipeline (v3) with one voiceprint per enrolled person from their clip, as
recorded (clean) and as heard through a phone line (`bench.voiceprints.phone_like`, 25 dB SNR: a usual line,
where the threshold misses people the most). Everything after the diarization is the product's own code:
the shipped calibration and threshold, `by_person` (exclusive by person, a speaker fitting two people named as
nobody) and `bot.services.asking.near_matches_of`.

The floor is chosen on the TUNING part only, among 5, 10, … up to the threshold: the lowest floor that asks no
wrong person on the tuning part even at half that floor (a margin of two: a question to the wrong person tells
them a stranger sounds like them, and ten meetings a part hold few near matches). The REPORT part is then counted
at that floor, against the baseline (no band) and the issue's example band (50 to the threshold).

Counted per diarized speaker, truth by majority overlap: speakers left unknown, those of them that are an
enrolled person present (the band's potential), questions, questions to the right person, to a wrong one
(someone else present, or an enrolled person who was not there).
"""
from __future__ import annotations

import pickle
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import meetings as M

CONDITIONS = ("clean", "phone")
PHONE_SNR_DB = 25.0
CACHE = Path(tempfile.gettempdir()) / "voiceid-bench-near-matches"


@dataclass
class Speaker:
    """One diarized speaker of one meeting: who it really is, and its confidence for each enrolled person."""

    meeting: str
    condition: str
    speaker: str
    truth: str | None
    enrolled: set[str]
    absent: set[str]
    confidence: dict[str, float]


@dataclass
class Count:
    speakers: int = 0
    unknown: int = 0
    unknown_enrolled: int = 0  # left unknown although an enrolled person present
    questions: int = 0
    right: int = 0
    wrong_present: int = 0  # asked a person present in the meeting who is not that speaker
    wrong_absent: int = 0  # asked an enrolled person who was not in the meeting

    @property
    def wrong(self) -> int:
        return self.wrong_present + self.wrong_absent


def diarized(part: M.Part, n: int) -> list[list[Speaker]]:
    """Per recording (meeting × condition), its speakers; kept in a cache file per part and count, so the
    tables can be printed again without diarizing."""
    from bench.scoring import majority_reference
    from bench.systems import VoiceId
    from bench.voiceprints import phone_like
    from bot.speech.matching import CALIBRATIONS, confidence

    path = CACHE / f"{part.name}-{n}.pickle"
    if path.exists():
        return pickle.loads(path.read_bytes())
    cal = CALIBRATIONS["v3"]
    system = VoiceId("v3")
    recordings = []
    for seed in range(n):
        m = M.meeting(part, seed)
        people = list(m.enrollment)
        vectors = np.stack([system.voiceprint(m.enrollment[p]) for p in people])
        for cond in CONDITIONS:
            print(f"  {part.name} meeting {m.name}, {cond} ...", file=sys.stderr, flush=True)
            samples = m.samples if cond == "clean" else phone_like(m.samples, seed, PHONE_SNR_DB)
            segments, speakers, sims = system.diarize(samples, vectors)
            conf = confidence(sims, cal)
            truth = majority_reference(m.reference, segments)
            recordings.append([Speaker(m.name, cond, s, truth.get(s), set(people) - set(m.absent), set(m.absent),
                                       {p: float(conf[i, j]) for j, p in enumerate(people)})
                               for i, s in enumerate(speakers)])
    CACHE.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(recordings))
    return recordings


def count(recordings: list[list[Speaker]], floor: float, *, condition: str | None = None,
          unambiguous_only: bool = True) -> Count:
    """The band at `floor` (0: no band, the baseline) through the product's matching and near matches."""
    from bot.services.asking import near_matches_of
    from bot.services.voiceprints import by_person
    from bot.speech.matching import CALIBRATIONS

    threshold = CALIBRATIONS["v3"].threshold
    c = Count()
    for speakers in recordings:
        if not speakers or (condition and speakers[0].condition != condition):
            continue
        people = list(speakers[0].confidence)
        output = {"diarization": [], "identification": [],
                  "voiceprints": [{"speaker": s.speaker, "match": None, "confidence": s.confidence} for s in speakers]}
        result = by_person(output, {p: p for p in people}, threshold)
        named = {v["speaker"]: v["match"] for v in result["voiceprints"]}
        asked = {q.speaker: q.user_id for q in near_matches_of(result, floor, threshold,
                                                                unambiguous_only=unambiguous_only)}
        for s in speakers:
            c.speakers += 1
            if named[s.speaker] is not None:
                continue
            c.unknown += 1
            c.unknown_enrolled += s.truth in s.enrolled
            who = asked.get(s.speaker)
            if who is None:
                continue
            c.questions += 1
            if who == s.truth:
                c.right += 1
            elif who in s.absent:
                c.wrong_absent += 1
            else:
                c.wrong_present += 1
    return c


def floors() -> list[float]:
    from bot.speech.matching import CALIBRATIONS

    return [float(f) for f in range(5, int(CALIBRATIONS["v3"].threshold), 5)]


def choose_floor(tuning: list[list[Speaker]]) -> float:
    """The lowest floor whose half still asks no wrong person on the tuning part (see the module docstring)."""
    return next((f for f in floors() if count(tuning, f / 2).wrong == 0), floors()[-1])


def row(label: str, c: Count) -> list[str]:
    share = f"{100 * c.right / c.questions:.0f} %" if c.questions else "—"
    return [label, str(c.speakers), str(c.unknown), str(c.unknown_enrolled), str(c.questions), str(c.right),
            share, str(c.wrong_present), str(c.wrong_absent)]


HEAD = ["band", "speakers", "left unknown", "of them enrolled, present", "questions", "to the right person",
        "right share", "to another present person", "to an absent person"]


def main(n: int) -> int:
    from bench.scoring import render
    from bot.speech.matching import CALIBRATIONS

    if not M.data_available():
        print(f"The speech data is missing ({M.DATA}); nothing to benchmark.", file=sys.stderr)
        return 2
    threshold = CALIBRATIONS["v3"].threshold
    tuning, report = diarized(M.TUNING, n), diarized(M.REPORT, n)
    body = [row(f"floor {f:g}", count(tuning, f)) for f in floors()]
    floor = choose_floor(tuning)
    print(f"TUNING part, {n} meetings × (clean, phone {PHONE_SNR_DB:g} dB), threshold {threshold:g}: the sweep\n"
          + render(HEAD, [row("none (baseline)", count(tuning, 0))] + body))
    print(f"chosen floor: {floor:g} (at {floor / 2:g} the tuning part asks "
          f"{count(tuning, floor / 2).wrong} wrong people)\n")
    body = []
    for cond in (None, *CONDITIONS):
        name = cond or "both"
        body += [row(f"{name}: none (baseline)", count(report, 0, condition=cond)),
                 row(f"{name}: [{floor:g}, {threshold:g})", count(report, floor, condition=cond)),
                 row(f"{name}: [{floor:g}, {threshold:g}), a speaker fitting two people asked anyway",
                     count(report, floor, condition=cond, unambiguous_only=False)),
                 row(f"{name}: [50, {threshold:g}) (the issue's example)", count(report, 50, condition=cond))]
    print(f"REPORT part, {n} meetings × (clean, phone {PHONE_SNR_DB:g} dB): \"Is this you?\" at the tuning "
          f"part's floor\n" + render(HEAD, body))
    return 0
