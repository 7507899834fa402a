"""The several-voiceprints case of `python -m bench.engine --two-voiceprints` (issue 20, item 1).

The same voice through a headset and through a phone gives different embeddings. Each enrolled person (present
or absent) gets two voiceprints from their own enrollment clip: one from the clip as it is (clean) and one from a
phone-like copy of it (`phone_like`: band-limited to 300–3400 Hz at 8 kHz, G.711 μ-law, white noise at 15 dB
SNR, a noisy line, and at 25 dB, a usual one). Every meeting is identified as recorded (clean) and as heard
through a phone (the whole mix degraded the same way, other noise). Each recording is diarized once with all the voiceprints; the rows differ only in which
voiceprints take part, and all use the product's own code: the shipped v2 calibration and threshold, and
`bot.services.voiceprints.by_person` (a speaker's best over a person's voiceprints, exclusive by person, and a
speaker that fits two people named as nobody). The last row leaves that rule out, as matching was before it: a
phone line's sound, shared by every voiceprint made through it, crowds different people's confidences at the
top, and the best of them is then a guess.

Counted per diarized segment, truth by majority overlap with the reference: named right, named wrong (another
present person), an absent person named, an enrolled present speaker left unnamed.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from bench import meetings as M

SNRS_DB = (15.0, 25.0)
ROWS = {"clean": "one voiceprint: clean clip (baseline)", "phone": "one voiceprint: phone copy of the clip",
        "both": "two voiceprints: clean + phone copy",
        "both-guessing": "two voiceprints, a speaker fitting two people named anyway"}


def phone_like(samples: np.ndarray, seed: int, snr_db: float = SNRS_DB[0]) -> np.ndarray:
    """A phone call's version of 16 kHz audio: 8 kHz, 300–3400 Hz, μ-law 8 bit, white noise at `snr_db` below
    the speech level; back at 16 kHz for the engine."""
    from scipy.signal import butter, resample_poly, sosfilt

    x = resample_poly(np.asarray(samples, np.float64), 1, 2)
    x = sosfilt(butter(6, [300, 3400], btype="bandpass", fs=8000, output="sos"), x)
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    energy = np.mean(frames**2, axis=1)
    speech = np.sqrt(np.mean(energy[energy >= np.median(energy)])) if len(energy) else 0.1
    x = x + np.random.default_rng(seed).normal(size=len(x)) * speech / 10 ** (snr_db / 20)
    mu = 255.0
    x = np.clip(x / max(np.max(np.abs(x)), 1e-9), -1, 1)
    coded = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127) / 127
    x = np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu * 0.7
    return resample_poly(x, 2, 1).astype(np.float32)


@dataclass
class Count:
    right: int = 0
    wrong: int = 0
    absent: int = 0
    missed: int = 0
    segments: int = 0


def identify_output(segments, speakers: list[str], conf: np.ndarray, labels: list[str]) -> dict:
    """An engine's identify output (per label) for these speakers and confidences."""
    return {"diarization": [{"speaker": s, "start": a, "end": b} for s, a, b in segments],
            "identification": [{"speaker": s, "start": a, "end": b, "diarizationSpeaker": s, "match": None}
                               for s, a, b in segments],
            "voiceprints": [{"speaker": s, "match": None, "confidence": {lab: float(conf[i, j])
                                                                          for j, lab in enumerate(labels)}}
                            for i, s in enumerate(speakers)]}


def guessing(conf: np.ndarray, groups: list[int], people: list[str], speakers: list[str]) -> dict[str, str | None]:
    """Matching by person without refusing a speaker that fits two people (the threshold and exclusivity only)."""
    from bot.speech.matching import CALIBRATIONS, assign, best_per_group

    chosen = assign(best_per_group(conf, groups, len(people)), CALIBRATIONS["v2"].threshold).matches
    return {s: people[c] if c is not None else None for s, c in zip(speakers, chosen)}


def tally(count: Count, meeting: M.Meeting, segments, named: dict[str, str | None]) -> None:
    from bench.scoring import majority_reference

    truth = majority_reference(meeting.reference, segments)
    enrolled = set(meeting.enrollment)
    for s, _, _ in segments:
        who, real = named.get(s), truth.get(s)
        count.segments += 1
        if who is None:
            count.missed += real in enrolled
        elif who == real:
            count.right += 1
        elif who in meeting.absent:
            count.absent += 1
        else:
            count.wrong += 1


def run(n: int, snr_db: float, part: M.Part = M.REPORT) -> dict[tuple[str, str], Count]:
    """(voiceprints row, recording condition) → counts, over `n` meetings of `part`, phone copies at `snr_db`."""
    from bench.systems import VoiceId
    from bot.services.voiceprints import by_person
    from bot.speech.matching import CALIBRATIONS, confidence

    cal = CALIBRATIONS["v2"]
    system = VoiceId("v2")
    counts = {(row, cond): Count() for row in ROWS for cond in ("clean", "phone")}
    for seed in range(n):
        m = M.meeting(part, seed)
        people = list(m.enrollment)
        clean = [system.voiceprint(m.enrollment[p]) for p in people]
        phone = [system.voiceprint(phone_like(m.enrollment[p], 1000 + i, snr_db)) for i, p in enumerate(people)]
        labels = [f"clean:{p}" for p in people] + [f"phone:{p}" for p in people]
        owners = {lab: lab.split(":", 1)[1] for lab in labels}
        for cond, samples in (("clean", m.samples), ("phone", phone_like(m.samples, seed, snr_db))):
            print(f"  meeting {m.name}, {cond} recording, {snr_db:g} dB ...", file=sys.stderr)
            segments, speakers, sims = system.diarize(samples, np.stack(clean + phone))
            conf = confidence(sims, cal)
            for row in ROWS:
                keep = [lab for lab in labels if row.startswith("both") or lab.startswith(row + ":")]
                cols = [labels.index(lab) for lab in keep]
                if row == "both-guessing":
                    named = guessing(conf[:, cols], [people.index(owners[lab]) for lab in keep], people, speakers)
                else:
                    out = by_person(identify_output(segments, speakers, conf[:, cols], keep),
                                    {lab: owners[lab] for lab in keep}, cal.threshold)
                    named = {v["speaker"]: v["match"] for v in out["voiceprints"]}
                tally(counts[row, cond], m, segments, named)
    return counts


def table(counts: dict[tuple[str, str], Count], n: int, part: M.Part, snr_db: float) -> str:
    from bench.scoring import render

    head = ["voiceprints per person", "recording", "segments", "named right", "vs baseline", "named wrong",
            "absent named", "enrolled left unknown"]
    body = []
    for cond in ("clean", "phone"):
        base = counts["clean", cond].right
        for row, label in ROWS.items():
            c = counts[row, cond]
            body.append([label, cond, str(c.segments), str(c.right), f"{c.right - base:+d}", str(c.wrong),
                         str(c.absent), str(c.missed)])
    return (f"Several voiceprints per person: {n} {part.name}-part meetings, each recorded clean and through a "
            f"phone (8 kHz, 300–3400 Hz, μ-law, {snr_db:g} dB SNR); shipped v2 calibration, threshold "
            f"{_threshold():g}, exclusive by person\n" + render(head, body))


def _threshold() -> float:
    from bot.speech.matching import CALIBRATIONS

    return CALIBRATIONS["v2"].threshold


def main(n: int) -> int:
    if not M.data_available():
        print(f"The speech data is missing ({M.DATA}); nothing to benchmark.", file=sys.stderr)
        return 2
    for snr_db in SNRS_DB:
        print(table(run(n, snr_db), n, M.REPORT, snr_db), flush=True)
    return 0
