"""Speaker-engine benchmark: `python -m bench.engine [--quick]` prints one table, raw senko as the baseline row.

Same data, same run for both rows:
- Libri meetings (bench.meetings, fixed seeds): DER and IER (collar 0.25; non-enrolled = "unknown") and
  the count of identification segments that name an absent person. Voiceid uses its recommended threshold;
  the baseline is senko's `diarize_samples` with naive matching (cosine, exclusive, threshold 0 = the API
  default), voiceprints being senko's centroid of the enrollment clip.
- AMI excerpts: DER (collar 0.25) over all files, and speakers found in trn01 / trn02.
- Speed and memory in a fresh child process per system: real-time factor (warm) and peak RSS on a long
  meeting (60 min; 10 with --quick), and the time to make a voiceprint from a 30 s clip (warm).
It also fits the confidence calibration (bot.engines.matching) on the Libri runs and prints it.

Note: senko 0.2.2's CPU fbank library is built for AVX-512 and crashes ("Illegal instruction") on CPUs
without it; the baseline then runs senko's pipeline with our equivalent torch fbank swapped in.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import meetings as M

TARGETS = {"libri_der": 4.0, "libri_ier": 5.0, "absent": 0, "ami_der": 28.0, "rtf": 0.02, "rss_mb": 1536,
           "voiceprint_s": 0.5}


@dataclass
class Row:
    name: str
    key: str
    libri_der: float = float("nan")
    libri_ier: float = float("nan")
    absent: int = 0
    ami_der: float = float("nan")
    ami_counts: str = ""
    rtf: float = float("nan")
    rss_mb: float = float("nan")
    voiceprint_s: float = float("nan")
    notes: list[str] = field(default_factory=list)


def annotation(segments):
    from pyannote.core import Annotation, Segment

    ann = Annotation()
    for i, (label, start, end) in enumerate(segments):
        if end > start:
            ann[Segment(start, end), i] = label
    return ann


# ---- the two systems -----------------------------------------------------------------------------------


class VoiceId:
    name = "voiceid (this engine)"
    key = "voiceid"

    def __init__(self):
        from bot.engines.diarize import SpeakerModels

        self.models = SpeakerModels()

    def voiceprint(self, clip: np.ndarray) -> np.ndarray:
        from bot.engines import pipeline, voiceprint
        from bot.engines.audio import Audio

        out = pipeline.make_voiceprint(self.models, Audio(clip))
        return voiceprint.decode(out.voiceprint).vector

    def diarize(self, samples: np.ndarray, vectors: np.ndarray):
        """(segments, speakers, similarity speakers × vectors)."""
        from bot.engines import pipeline
        from bot.engines.audio import Audio
        from bot.engines.base import MediaError

        try:
            diar, sims = pipeline.diarize_and_compare(self.models, Audio(samples), vectors)
        except MediaError:
            return [], [], np.zeros((0, len(vectors)))
        return diar.segments, diar.speakers, sims

    def threshold(self) -> float:
        from bot.engines.matching import RECOMMENDED_THRESHOLD

        return RECOMMENDED_THRESHOLD

    def confidence(self, sims):
        from bot.engines.matching import confidence

        return confidence(sims)


def senko_fbank(self, audio_source, subsegments, *, sample_offset=0):
    """senko's `_extract_fbank_features` contract, computed by our torch fbank (its .so needs AVX-512)."""
    from bot.engines.fbank import fbank_batch

    spans = [(int(s * M.SR) - sample_offset, int(e * M.SR) - sample_offset) for s, e in subsegments]
    flat, frames, offsets, pos = [], [], [], 0
    for b in range(0, len(spans), 256):
        feats, lengths = fbank_batch(audio_source, spans[b:b + 256])
        for i, n in enumerate(lengths):
            f = feats[i, :n].reshape(-1).numpy()
            flat.append(f)
            frames.append(n)
            offsets.append(pos)
            pos += f.size
    return np.concatenate(flat), np.array(frames), np.array(offsets), 80


class RawSenko:
    name = "raw senko 0.2.2 (baseline)"
    key = "senko"

    def __init__(self):
        from senko import Diarizer

        Diarizer._extract_fbank_features = senko_fbank
        self.d = Diarizer(device="cpu", vad="silero", warmup=False, quiet=True)

    def _run(self, samples):
        result = self.d.diarize_samples(np.clip(samples, -1, 1).astype(np.float32), 16000)
        if not result:
            return [], {}
        segs = [(s["speaker"], s["start"], s["end"]) for s in result["merged_segments"]]
        cents = {k: v / np.linalg.norm(v) for k, v in result["speaker_centroids"].items()}
        return segs, cents

    def voiceprint(self, clip):
        segs, cents = self._run(clip)
        talk: dict[str, float] = {}
        for spk, s, e in segs:
            talk[spk] = talk.get(spk, 0) + e - s
        return cents[max(talk, key=talk.get)] if talk else next(iter(cents.values()))

    def diarize(self, samples, vectors):
        segs, cents = self._run(samples)
        speakers = sorted({s for s, _, _ in segs})
        if not speakers:
            return [], [], np.zeros((0, len(vectors)))
        return segs, speakers, np.stack([cents[s] for s in speakers]) @ np.asarray(vectors).T

    def threshold(self) -> float:
        return 0.0

    def confidence(self, sims):
        return np.asarray(sims) * 100


# ---- accuracy ------------------------------------------------------------------------------------------


def libri(system, meetings: list[M.Meeting], pairs: list | None = None) -> tuple[float, float, int]:
    from pyannote.metrics.diarization import DiarizationErrorRate
    from pyannote.metrics.identification import IdentificationErrorRate

    from bot.engines.matching import assign

    der, ier, absent = DiarizationErrorRate(collar=0.25), IdentificationErrorRate(collar=0.25), 0
    for m in meetings:
        labels = list(m.enrollment)
        vectors = np.stack([system.voiceprint(m.enrollment[k]) for k in labels])
        segs, speakers, sims = system.diarize(m.samples, vectors)
        chosen = assign(system.confidence(sims), system.threshold(), exclusive=True).matches
        names = {spk: (labels[c] if c is not None else M.UNKNOWN) for spk, c in zip(speakers, chosen)}
        der(annotation(m.reference), annotation(segs))
        ier(annotation(m.identity_reference()), annotation([(names[s], a, b) for s, a, b in segs]))
        absent += sum(1 for s, _, _ in segs if names[s] in m.absent)
        if pairs is not None:
            truth = majority_reference(m.reference, segs)
            for i, spk in enumerate(speakers):
                for j, lab in enumerate(labels):
                    pairs.append((float(sims[i, j]), truth.get(spk) == lab, lab in m.absent))
    return 100 * abs(der), 100 * abs(ier), absent


def majority_reference(reference, segments) -> dict[str, str]:
    """Each hypothesis speaker → the reference speaker it overlaps most."""
    overlap: dict[tuple[str, str], float] = {}
    for hyp, hs, he in segments:
        for ref, rs, re_ in reference:
            o = min(he, re_) - max(hs, rs)
            if o > 0:
                overlap[hyp, ref] = overlap.get((hyp, ref), 0.0) + o
    best: dict[str, tuple[float, str]] = {}
    for (hyp, ref), o in overlap.items():
        if o > best.get(hyp, (0.0, ""))[0]:
            best[hyp] = (o, ref)
    return {h: r for h, (_, r) in best.items()}


def ami(system, files: list[str]) -> tuple[float, dict[str, int]]:
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref = M.load_rttm(M.AMI / "reference.rttm")
    der, counts = DiarizationErrorRate(collar=0.25), {}
    for f in files:
        segs, speakers, _ = system.diarize(M.read(M.AMI / f"{f}.wav"), np.zeros((1, 192), np.float32))
        der(annotation(ref[f]), annotation(segs))
        counts[f] = len(speakers)
    return 100 * abs(der), counts


def calibrate(pairs) -> str:
    """Fit the logistic mapping and report where same / different scores fall under the current constants."""
    from sklearn.linear_model import LogisticRegression

    from bot.engines.matching import RECOMMENDED_THRESHOLD, confidence

    s = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    fit = LogisticRegression(class_weight="balanced", C=100).fit(s[:, None], y)
    w, b = float(fit.coef_[0][0]), float(fit.intercept_[0])
    conf = confidence(s)
    lines = [
        f"calibration on {len(s)} speaker×voiceprint pairs ({int(y.sum())} same person):",
        f"  fitted: midpoint {-b / w:.3f}, scale {1 / w:.4f}",
        (f"  cosine  same person: min {s[y].min():.3f}, median {np.median(s[y]):.3f}; "
         f"different: max {s[~y].max():.3f}, median {np.median(s[~y]):.3f}"),
        (f"  confidence (current constants) same: min {conf[y].min():.1f}; different: max {conf[~y].max():.1f}; "
         f"threshold {RECOMMENDED_THRESHOLD:g}"),
    ]
    return "\n".join(lines)


# ---- speed and memory (child processes) ----------------------------------------------------------------


def speed_child(system_name: str, wav: str, clip: str) -> dict:
    from bot.engines.audio import decode

    system = VoiceId() if system_name == "voiceid" else RawSenko()
    clip_samples = decode(Path(clip)).samples
    warm = decode(Path(wav)).samples[: 60 * M.SR]
    system.voiceprint(clip_samples)
    system.diarize(warm, np.zeros((1, 192), np.float32))
    t = time.perf_counter()
    for _ in range(3):
        if system_name == "voiceid":
            from bot.engines import pipeline

            pipeline.make_voiceprint(system.models, decode(Path(clip)))
        else:
            system.voiceprint(decode(Path(clip)).samples)
    vp = (time.perf_counter() - t) / 3
    t = time.perf_counter()
    audio = decode(Path(wav))
    system.diarize(audio.samples, np.zeros((3, 192), np.float32))
    elapsed = time.perf_counter() - t
    rss = peak_rss_mb()
    return {"rtf": elapsed / audio.duration, "rss_mb": rss, "voiceprint_s": vp, "seconds": elapsed}


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not getrusage: Linux carries ru_maxrss across exec, so a child
    started from the large benchmark parent would report the parent's peak instead of its own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_speed(system_name: str, wav: Path, clip: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.engine", "--speed-child", system_name, str(wav), str(clip)],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def thirty_second_clip() -> np.ndarray:
    x = np.concatenate([M.read(p) for p in M.utterances("1998")[:4]])
    return x[: 30 * M.SR]


# ---- table ---------------------------------------------------------------------------------------------


def measure_speed(rows: list[Row], minutes: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wav = M.write_wav(Path(tmp) / "long.wav", M.long_meeting(minutes))
        clip = M.write_wav(Path(tmp) / "clip.wav", thirty_second_clip())
        for row in rows:
            print(f"{row.name}: speed on {minutes:g} min ...", file=sys.stderr)
            speed = run_speed(row.key, wav, clip)
            if "error" in speed:
                row.notes.append(f"speed run failed: {speed['error']}")
                continue
            row.rtf, row.rss_mb, row.voiceprint_s = speed["rtf"], speed["rss_mb"], speed["voiceprint_s"]


def table(rows: list[Row], meeting_count: int, ami_files: list[str], minutes: float) -> str:
    head = ["system", f"Libri DER % ({meeting_count})", "Libri IER %", "absent-named segs",
            f"AMI DER % ({len(ami_files)})", "speakers trn01/trn02", f"RTF ({minutes:g} min)", "peak RSS MB",
            "voiceprint s (30 s clip)"]
    t = TARGETS
    body = [[r.name, f"{r.libri_der:.1f}", f"{r.libri_ier:.1f}", str(r.absent), f"{r.ami_der:.1f}", r.ami_counts,
             f"{r.rtf:.4f}", f"{r.rss_mb:.0f}", f"{r.voiceprint_s:.2f}"] for r in rows]
    body.append(["target", f"≤ {t['libri_der']:g}", f"≤ {t['libri_ier']:g}", "0", f"≤ {t['ami_der']:g}",
                 "0 / ≤ 1", f"≤ {t['rtf']:g}", f"≤ {t['rss_mb']}", f"≤ {t['voiceprint_s']:g}"])
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    lines = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(b) for b in body]
    for r in rows:
        lines += [f"  {r.name}: {n}" for n in r.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 meetings, 4 AMI files, 10-minute speed test")
    parser.add_argument("--meetings", type=int, default=None, help="number of Libri meetings (default 6)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the raw senko row (for calibration runs)")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed and memory runs")
    parser.add_argument("--no-accuracy", action="store_true", help="only the speed and memory runs")
    parser.add_argument("--speed-child", nargs=3, metavar=("SYSTEM", "WAV", "CLIP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.speed_child:
        print(json.dumps(speed_child(*args.speed_child)))
        return 0
    if not M.data_available():
        print(f"The speech data is missing ({M.DATA}); nothing to benchmark.", file=sys.stderr)
        return 2
    n_meetings = args.meetings or (2 if args.quick else 6)
    ami_files = ["trn01", "trn02", "trn07", "sample"] if args.quick else \
        sorted(M.load_rttm(M.AMI / "reference.rttm"))
    minutes = 10.0 if args.quick else 60.0
    load = os.getloadavg()[0]
    print(f"building {n_meetings} Libri meetings (seeds 0..{n_meetings - 1}) ...", file=sys.stderr)
    libri_meetings = [] if args.no_accuracy else [M.libri_meeting(seed) for seed in range(n_meetings)]
    rows, pairs = [], []
    for cls in (VoiceId,) if args.no_baseline else (RawSenko, VoiceId):
        if args.no_accuracy:
            rows.append(Row(cls.name, cls.key))
            continue
        print(f"{cls.name}: accuracy ...", file=sys.stderr)
        system = cls()
        row = Row(cls.name, cls.key)
        row.libri_der, row.libri_ier, row.absent = libri(system, libri_meetings,
                                                         pairs if cls is VoiceId else None)
        row.ami_der, counts = ami(system, ami_files)
        row.ami_counts = f"{counts.get('trn01', '-')} / {counts.get('trn02', '-')}"
        rows.append(row)
        del system
    if not args.no_speed:
        measure_speed(rows, minutes)
    print(table(rows, n_meetings, ami_files, minutes))
    if pairs:
        print(calibrate(pairs))
    print(f"load average at start {load:.1f}, at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(other work on the machine inflates RTF and voiceprint time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
