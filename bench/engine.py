"""Speaker-engine benchmark: `python -m bench.engine [--quick]` prints one table per data part, with baseline rows.

Honest measurement: bench.meetings splits the data into a tuning part and a report part (different people,
different AMI files). Every system's calibration (cosine → confidence, recommended threshold) is fitted on the
tuning part only and then applied unchanged to both parts; quote the report part.

Systems, same data, same run:
- raw senko 0.2.2 (baseline): its `diarize_samples`, voiceprints being senko's centroid of the enrollment clip,
  with the same calibrated-threshold procedure as ours (fitted on the tuning part).
- voiceid v1: Silero VAD → 1.5 s windows → spectral clustering (`bench.v1`; no longer in the product).
- voiceid v2: segmentation-3.0 windows → local-speaker embeddings → constrained clustering (`bot.speech`).
- voiceid v3: v2's streaming pass, then speech and overlap from the probabilities, counting that holds, and the
  enrolled voices as anchors (`bot.speech.v3`); also without anchors, and with the true speaker count as a hint.

Measured per part: DER with its parts (missed, false alarm, confusion; collar 0.25, overlap scored), overlapped
speech recall and precision (where the reference and the system hold two speakers), and the speakers found vs
true per file, on the simulated meetings, the AMI excerpts and the phone calls; on the meetings also IER
(non-enrolled = "unknown") and segments naming an absent person. Speed and
memory run in a fresh child process per system: real-time factor (warm) and peak RSS on a long meeting, and
the time to make a voiceprint from a 30 s clip (warm); v2 also on 2 h (and 4 h with --long).

senko's CPU fbank library needs AVX-512: on CPUs without it the baseline runs with our equivalent torch fbank
swapped in; on CPUs with it, senko runs as shipped.
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
from bench.scoring import Scores, annotation, majority_reference, render
from bench.systems import VoiceId, threads

TARGETS = {"libri_der": 8.0, "libri_ier": 8.0, "absent": 0, "ami_der": 20.0, "overlap_recall": 60.0,
           "overlap_precision": 0.9, "rtf": 0.02, "rss_mb": 1300, "voiceprint_s": 0.5}


@dataclass
class Calibration:
    """cosine → confidence (logistic) and the threshold, fitted on the tuning part."""

    midpoint: float
    scale: float
    threshold: float

    def confidence(self, sims) -> np.ndarray:
        return 100.0 / (1.0 + np.exp(-(np.asarray(sims, np.float64) - self.midpoint) / self.scale))


@dataclass
class Result:
    meetings: Scores = field(default_factory=Scores)
    libri_ier: float = float("nan")
    absent: int = 0
    ami: Scores = field(default_factory=Scores)
    calls: Scores = field(default_factory=Scores)


@dataclass
class Row:
    name: str
    key: str
    parts: dict[str, Result] = field(default_factory=dict)
    calibration: Calibration | None = None
    rtf: float = float("nan")
    rss_mb: float = float("nan")
    voiceprint_s: float = float("nan")
    long: dict[str, tuple[float, float]] = field(default_factory=dict)  # hours → (rtf, rss)
    notes: list[str] = field(default_factory=list)


# ---- the systems ---------------------------------------------------------------------------------------


class VoiceIdV1(VoiceId):
    """v1 (`bench.v1`) on the product's Silero and CAM++: speakers matched by their clustering centroids."""

    def __init__(self):
        super().__init__(preload=False)  # no diarization pipeline: v1 uses only Silero and CAM++

    def diarize(self, samples: np.ndarray, vectors: np.ndarray, num: int | None = None):
        from bench import v1

        diar = v1.diarize(self.models, samples)
        if not diar.segments:
            return [], [], np.zeros((0, len(vectors)))
        centroids = np.stack([diar.centroids[s] for s in diar.speakers])
        return diar.segments, diar.speakers, centroids @ np.asarray(vectors, np.float32).T


class VoiceIdV3(VoiceId):
    """v3; its variants (without anchors, with the count hint) and v2 share one loaded model, each file's
    streaming pass and each clip's voiceprint, which are the same for all of them (v2's streaming pass is v3's,
    bit for bit, less the probabilities v3 also keeps; only the stages after it differ)."""

    _shared: tuple | None = None

    def __init__(self):
        if VoiceIdV3._shared is None:
            super().__init__("v3")
            VoiceIdV3._shared = (self.models, memo_local(self.models.pipeline), {})
        self.models = VoiceIdV3._shared[0]

    def voiceprint(self, clip: np.ndarray) -> np.ndarray:
        import hashlib

        kept = VoiceIdV3._shared[2]
        key = hashlib.sha1(np.ascontiguousarray(clip).tobytes()).hexdigest()
        if key not in kept:
            kept[key] = super().voiceprint(clip)
        return kept[key]


class VoiceIdV2(VoiceIdV3):
    """v2 on the shared streaming pass: v2's clustering and reconstruction, v2's models' view."""

    def __init__(self):
        import copy

        from bot.speech.diarization import DiarizationParams, SpeakerDiarization

        super().__init__()
        pipeline = SpeakerDiarization.__new__(SpeakerDiarization)
        pipeline.__dict__.update(self.models.pipeline.__dict__)  # the memoised `local` included
        pipeline.params = DiarizationParams()
        self.models = copy.copy(self.models)
        self.models._pipeline, self.models.diarization = pipeline, "v2"


def memo_local(pipeline):
    """Wrap `pipeline.local` so that a second call on the same samples returns the kept result."""
    import hashlib

    original, kept = pipeline.local, {}

    def local(audio, progress=None, total_samples=None):
        blocks = [np.asarray(b) for b in audio]  # consumed here, so that an Excerpts tap sees every block
        key = hashlib.sha1(b"".join(b.tobytes() for b in blocks)).hexdigest()
        if key not in kept:
            kept[key] = original(iter(blocks), progress, total_samples)
        return kept[key]

    pipeline.local = local
    return kept


class VoiceIdV3NoAnchors(VoiceIdV3):
    anchors = False


class VoiceIdV3Hint(VoiceIdV3):
    hint = True



def cpu_has_avx512() -> bool:
    try:
        return " avx512f " in f" {Path('/proc/cpuinfo').read_text()} ".replace("\n", " ")
    except OSError:
        return False


def senko_fbank(self, audio_source, subsegments, *, sample_offset=0):
    """senko's `_extract_fbank_features` contract, computed by our torch fbank (its .so needs AVX-512)."""
    from bot.speech.fbank import fbank_batch

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
    def __init__(self):
        from senko import Diarizer

        if not cpu_has_avx512():
            Diarizer._extract_fbank_features = senko_fbank
        self.d = Diarizer(device="cpu", vad="silero", warmup=False, quiet=True)
        if threads():
            import torch

            torch.set_num_threads(threads())

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

    def diarize(self, samples, vectors, num=None):
        segs, cents = self._run(samples)
        speakers = sorted({s for s, _, _ in segs})
        if not speakers:
            return [], [], np.zeros((0, len(vectors)))
        return segs, speakers, np.stack([cents[s] for s in speakers]) @ np.asarray(vectors).T


SYSTEMS = {"senko": ("raw senko 0.2.2 (baseline)", RawSenko), "v1": ("voiceid v1 (VAD windows)", VoiceIdV1),
           "v2": ("voiceid v2 (segmentation)", VoiceIdV2),
           "v3-noanchors": ("voiceid v3 (no voiceprints)", VoiceIdV3NoAnchors),
           "v3": ("v3 + anchors (enrolled voiceprints)", VoiceIdV3),
           "v3-hint": ("v3 + hint (numSpeakers)", VoiceIdV3Hint)}


VARIANTS = ("v3-noanchors", "v3-hint")  # v3's speed and memory


# ---- accuracy ------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One system on one meeting: what it found, before any threshold."""

    meeting: M.Meeting
    labels: list[str]
    segments: list
    speakers: list[str]
    sims: np.ndarray


def run_meetings(system, meetings: list[M.Meeting]) -> list[Run]:
    runs = []
    for m in meetings:
        labels = list(m.enrollment)
        vectors = np.stack([system.voiceprint(m.enrollment[k]) for k in labels])
        segs, speakers, sims = system.diarize(m.samples, vectors, len(m.present))
        runs.append(Run(m, labels, segs, speakers, sims))
    return runs


def pairs_of(runs: list[Run]) -> list[tuple[float, bool]]:
    """(cosine, same person) for every diarized speaker × voiceprint; truth by majority overlap."""
    out = []
    for r in runs:
        truth = majority_reference(r.meeting.reference, r.segments)
        for i, spk in enumerate(r.speakers):
            for j, lab in enumerate(r.labels):
                out.append((float(r.sims[i, j]), truth.get(spk) == lab))
    return out


def fit_calibration(pairs: list[tuple[float, bool]]) -> Calibration:
    """The product's procedure: a balanced logistic regression of "same person" on the cosine gives midpoint
    and scale; the threshold is the middle of the confidence range that makes the fewest errors on these
    pairs (a different person named or a same person missed), never under 50."""
    from sklearn.linear_model import LogisticRegression

    s = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    fit = LogisticRegression(class_weight="balanced", C=100).fit(s[:, None], y)
    w, b = float(fit.coef_[0][0]), float(fit.intercept_[0])
    cal = Calibration(round(-b / w, 3), round(1 / w, 4), 50.0)
    conf = cal.confidence(s)
    grid = np.arange(50.0, 99.5, 0.5)
    errors = np.array([np.sum((conf >= t) & ~y) + np.sum((conf < t) & y) for t in grid])
    best = grid[errors == errors.min()]
    cal.threshold = float(np.round(np.median(best) / 5) * 5)  # a round number inside the best range
    return cal


def score(runs: list[Run], cal: Calibration) -> Result:
    from pyannote.metrics.identification import IdentificationErrorRate

    from bot.speech.matching import assign

    out, ier = Result(), IdentificationErrorRate(collar=0.25)
    for r in runs:
        m = r.meeting
        chosen = assign(np.round(cal.confidence(r.sims), 1), cal.threshold, exclusive=True).matches
        names = {spk: (r.labels[c] if c is not None else M.UNKNOWN) for spk, c in zip(r.speakers, chosen)}
        out.meetings.add(m.name, m.reference, r.segments, m.duration)
        ier(annotation(m.identity_reference()), annotation([(names[s], a, b) for s, a, b in r.segments]))
        out.absent += sum(1 for s, _, _ in r.segments if names[s] in m.absent)
    out.libri_ier = 100 * abs(ier)
    return out


def recordings(system, part: M.Part, result: Result) -> None:
    """The part's AMI excerpts and phone calls, diarized without voiceprints."""
    ref = M.load_rttm(M.AMI / "reference.rttm")
    nothing = np.zeros((1, 192), np.float32)
    for f in part.ami_files:
        x = M.read(M.AMI / f"{f}.wav")
        segs, _, _ = system.diarize(x, nothing, len({s for s, _, _ in ref[f]}))
        result.ami.add(f, ref[f], segs, len(x) / M.SR)
    for name in part.calls:
        x, reference = M.call(name)
        segs, _, _ = system.diarize(x, nothing, len({s for s, _, _ in reference}))
        result.calls.add(name, reference, segs, len(x) / M.SR)


# ---- speed and memory (child processes) ----------------------------------------------------------------


def speed_child(system_name: str, wav: str, clip: str) -> dict:
    from bot.speech.audio import decode

    # v2 and v3 on their own, without the accuracy runs' memo, which would hold the whole recording
    system = VoiceId(system_name) if system_name in ("v2", "v3") else SYSTEMS[system_name][1]()
    import soundfile as sf

    clip_samples = decode(Path(clip)).samples
    warm, _ = sf.read(wav, frames=60 * M.SR, dtype="float32")  # not the whole file: it would count in the peak
    system.voiceprint(clip_samples)
    system.diarize(warm, np.zeros((1, 192), np.float32))
    del warm
    t = time.perf_counter()
    for _ in range(3):
        if isinstance(system, VoiceId):
            from bot.speech import tasks

            tasks.make_voiceprint(system.models, decode(Path(clip)))
        else:
            system.voiceprint(decode(Path(clip)).samples)
    vp = (time.perf_counter() - t) / 3
    t = time.perf_counter()
    if isinstance(system, VoiceId) and not isinstance(system, VoiceIdV1):  # the engine's own path: blocks
        from bot.speech import tasks
        from bot.speech.audio import MediaStream

        diar, _ = tasks.diarize_and_compare(system.models, MediaStream(Path(wav)), np.zeros((3, 192)))
        duration = diar.duration
    else:
        audio = decode(Path(wav))
        system.diarize(audio.samples, np.zeros((3, 192), np.float32))
        duration = audio.duration
    elapsed = time.perf_counter() - t
    rss = peak_rss_mb()
    return {"rtf": elapsed / duration, "rss_mb": rss, "voiceprint_s": vp, "seconds": elapsed}


class StandInSegmentation:
    """Fast stand-in with the real output shape: each window holds 1–3 speakers taking turns, some overlap."""

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        from bot.speech.segmentation import FRAMES

        out = np.full((len(windows), FRAMES, 7), -10.0, np.float32)
        for w in out:
            classes = self.rng.choice([0, 1, 2, 3, 4], size=FRAMES // 50 + 1, p=[0.2, 0.3, 0.25, 0.15, 0.1])
            w[np.arange(FRAMES), np.repeat(classes, 50)[:FRAMES]] = 0.0
        return out


class StandInEmbedder:
    """Embeddings near one of 8 fixed voices, so that clustering and reconstruction see realistic sizes."""

    def __init__(self):
        from bot.speech.embedding import l2

        self.rng = np.random.default_rng(1)
        self.voices = l2(self.rng.normal(size=(8, 192)))

    def windows(self, span, starts, masks, min_frames, max_frames=None):
        from bot.speech.embedding import l2

        pick = self.voices[self.rng.integers(0, 8, (masks.shape[0], masks.shape[2]))]
        return l2(pick + 0.3 * self.rng.normal(size=pick.shape) / np.sqrt(192)).astype(np.float32)


def memory_child(wav: str) -> dict:
    """The v2 pipeline's own memory on a long file (streaming decode, per-window results, clustering,
    reconstruction), with the two neural models replaced by stand-ins: add the models' constant share
    measured in the real runs to get the whole."""
    from bot.speech.audio import MediaStream
    from bot.speech.diarization import SpeakerDiarization

    base = current_rss_mb()
    sd = SpeakerDiarization(segmentation=StandInSegmentation(), embedder=StandInEmbedder())
    t = time.perf_counter()
    out = sd(MediaStream(Path(wav)).blocks())
    return {"hours": round(out.duration / 3600, 2), "pipeline_mb": peak_rss_mb() - base,
            "speakers": len(out.speakers), "seconds": time.perf_counter() - t}


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_long_wav(path: Path, hours: float) -> Path:
    """A long recording written block by block (a 4 h array would weigh 0.9 GB in this process)."""
    import soundfile as sf

    piece = M.meeting(M.TUNING, 100, 5.0).samples
    with sf.SoundFile(str(path), "w", M.SR, 1, subtype="PCM_16") as f:
        for _ in range(int(np.ceil(hours * 3600 * M.SR / len(piece)))):
            f.write(piece)
    return path


def memory_proxy(hours: list[float]) -> str:
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for h in hours:
            wav = write_long_wav(Path(tmp) / "long.wav", h)
            out = subprocess.run([sys.executable, "-m", "bench.engine", "--memory-child", str(wav)],
                                 capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                                 check=False)
            if out.returncode != 0:
                lines.append(f"  {h:g} h: failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            lines.append(f"  {r['hours']:g} h: pipeline memory above the loaded process {r['pipeline_mb']:.0f} MB "
                         f"({r['speakers']} speakers, {r['seconds']:.0f} s with stand-in models)")
            wav.unlink()
    return "v2 pipeline memory (streaming decode, real data structures, stand-in models):\n" + "\n".join(lines)


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


def measure_speed(rows: list[Row], minutes: float, long_hours: list[float]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clip = M.write_wav(Path(tmp) / "clip.wav", thirty_second_clip())
        wav = M.write_wav(Path(tmp) / "long.wav", M.long_meeting(minutes))
        for row in rows:
            if row.key in VARIANTS:
                continue
            print(f"{row.name}: speed on {minutes:g} min ...", file=sys.stderr)
            speed = run_speed(row.key, wav, clip)
            if "error" in speed:
                row.notes.append(f"speed run failed: {speed['error']}")
                continue
            row.rtf, row.rss_mb, row.voiceprint_s = speed["rtf"], speed["rss_mb"], speed["voiceprint_s"]
        for hours in long_hours:
            wav.unlink()
            long = M.long_meeting(hours * 60)
            wav = M.write_wav(Path(tmp) / "long.wav", long)
            del long
            for row in rows:
                if row.key not in ("v2", "v3"):
                    continue
                print(f"{row.name}: memory on {hours:g} h ...", file=sys.stderr)
                speed = run_speed(row.key, wav, clip)
                if "error" in speed:
                    row.notes.append(f"{hours:g} h run failed: {speed['error']}")
                else:
                    row.long[f"{hours:g} h"] = (speed["rtf"], speed["rss_mb"])


def cold_voiceprints(runs: int = 10, seconds: float = 10.0) -> dict:
    """`python -m bot voiceprint CLIP` as a new user runs it, from a cold process: the median and spread of
    `runs` runs on a `seconds` clip, after one run that exports the models into a fresh VAR_DIR (as the first
    start of an installation does)."""
    with tempfile.TemporaryDirectory() as tmp:
        clip = M.write_wav(Path(tmp) / "clip.wav", thirty_second_clip()[: int(seconds * M.SR)])
        env = {**os.environ, "VAR_DIR": str(Path(tmp) / "var")}
        root = Path(__file__).resolve().parents[1]

        def once() -> float:
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "bot", "voiceprint", str(clip)], capture_output=True,
                                 text=True, cwd=root, env=env, check=False)
            if out.returncode != 0:
                raise RuntimeError((out.stderr.strip().splitlines() or ["failed"])[-1])
            return time.perf_counter() - t

        first = once()
        times = sorted(once() for _ in range(runs))
    return {"first": first, "median": float(np.median(times)), "min": times[0], "max": times[-1], "runs": runs,
            "seconds": seconds, "load": os.getloadavg()}


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


# ---- table ---------------------------------------------------------------------------------------------


def table(rows: list[Row], part: M.Part, meeting_count: int) -> str:
    head = ["system", f"meetings DER % ({meeting_count}) (miss/FA/conf)", "IER %", "absent-named segs",
            "overlap R % / P", f"AMI DER % ({len(part.ami_files)}) (miss/FA/conf)", "AMI overlap R % / P",
            "AMI speakers found/true", "call DER % (miss/FA/conf)", "call speakers", "meetings: speakers found"]
    t = TARGETS
    body = []
    for r in rows:
        x = r.parts[part.name]
        body.append([r.name, x.meetings.der_cell(), f"{x.libri_ier:.1f}", str(x.absent), x.meetings.overlap_cell(),
                     x.ami.der_cell(), x.ami.overlap_cell(), x.ami.count_cell(),
                     x.calls.der_cell() if x.calls.counts else "-", x.calls.count_cell() or "-",
                     x.meetings.count_cell(short=True)])
    body.append(["target", f"≤ {t['libri_der']:g}", f"≤ {t['libri_ier']:g}", "0",
                 f"≥ {t['overlap_recall']:g} / ≥ {t['overlap_precision']:g}", f"≤ {t['ami_der']:g}",
                 f"≥ {t['overlap_recall']:g} / ≥ {t['overlap_precision']:g}", "right on ≥ 3 of trn06–09", "",
                 "never 1 of 2", "never 1"])
    return render(head, body)


def speed_table(rows: list[Row], minutes: float) -> str:
    head = ["system", f"RTF ({minutes:g} min)", "peak RSS MB", "voiceprint s (30 s clip)", "long: RTF / peak RSS MB",
            "calibration (tuning): midpoint, scale, threshold"]
    body = [[r.name, f"{r.rtf:.4f}", f"{r.rss_mb:.0f}", f"{r.voiceprint_s:.2f}",
             ", ".join(f"{k}: {a:.4f} / {b:.0f}" for k, (a, b) in r.long.items()) or "-",
             f"{r.calibration.midpoint:.3f}, {r.calibration.scale:.4f}, {r.calibration.threshold:g}"
             if r.calibration else "-"] for r in rows]
    t = TARGETS
    body.append(["target", f"≤ {t['rtf']:g}", f"≤ {t['rss_mb']}", f"≤ {t['voiceprint_s']:g}",
                 f"2 h ≤ {t['rss_mb']}, 4 h no OOM", ""])
    lines = [render(head, body)]
    for r in rows:
        lines += [f"  {r.name}: {n}" for n in r.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 meetings per part, 10-minute speed test, no 2 h run")
    parser.add_argument("--meetings", type=int, default=None, help="simulated meetings per part (default 20)")
    parser.add_argument("--systems", default="senko,v1,v2,v3-noanchors,v3,v3-hint",
                        help=f"comma-separated: {', '.join(SYSTEMS)}")
    parser.add_argument("--tuning-only", action="store_true", help="do not run the report part (while tuning)")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed and memory runs")
    parser.add_argument("--no-accuracy", action="store_true", help="only the speed and memory runs")
    parser.add_argument("--minutes", type=float, default=None, help="speed-test length (default 60; 10 with --quick)")
    parser.add_argument("--long", action="store_true", help="also the 4-hour memory run (v2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per system (default: all cores)")
    parser.add_argument("--memory", action="store_true",
                        help="only the v2 pipeline's memory on 2 h and 4 h with stand-in models")
    parser.add_argument("--two-voiceprints", action="store_true",
                        help="only the several-voiceprints case: clean and phone-copy voiceprints (bench.voiceprints)")
    parser.add_argument("--near-matches", action="store_true",
                        help='only "Is this you?": the band under the threshold, floor chosen on tuning (bench.near_matches)')
    parser.add_argument("--no-cold", action="store_true", help="skip the cold `python -m bot voiceprint` runs")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--speed-child", nargs=3, metavar=("SYSTEM", "WAV", "CLIP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        os.environ["BENCH_THREADS"] = str(args.threads)
    if args.speed_child:
        print(json.dumps(speed_child(*args.speed_child)))
        return 0
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return 0
    if args.memory:
        print(memory_proxy([2.0, 4.0]))
        return 0
    if args.near_matches:
        from bench import near_matches

        return near_matches.main(args.meetings or (4 if args.quick else 12))
    if args.two_voiceprints:
        from bench import voiceprints

        return voiceprints.main(args.meetings or (4 if args.quick else 20))
    if not M.data_available():
        print(f"The speech data is missing ({M.DATA}); nothing to benchmark.", file=sys.stderr)
        return 2
    n = args.meetings or (4 if args.quick else 20)
    minutes = args.minutes or (10.0 if args.quick else 60.0)
    long_hours = [] if args.quick else [2.0] + ([4.0] if args.long else [])
    parts = [M.TUNING] if args.tuning_only else [M.TUNING, M.REPORT]
    load = os.getloadavg()[0]
    rows = [Row(SYSTEMS[k][0], k) for k in args.systems.split(",")]
    if not args.no_accuracy:
        print(f"building {n} meetings per part ...", file=sys.stderr)
        built = {p.name: [M.meeting(p, seed) for seed in range(n)] for p in parts}
        for row in rows:
            print(f"{row.name}: accuracy ...", file=sys.stderr)
            system = SYSTEMS[row.key][1]()
            runs = {p.name: run_meetings(system, built[p.name]) for p in parts}
            row.calibration = fit_calibration(pairs_of(runs[M.TUNING.name]))  # tuning part only
            for p in parts:
                row.parts[p.name] = score(runs[p.name], row.calibration)
                recordings(system, p, row.parts[p.name])
            del system
        for p in parts:
            share = np.mean([M.overlap_share(m.reference) for m in built[p.name]])
            print(f"\n{p.name.upper()} part: {n} simulated meetings of {', '.join(p.people)} "
                  f"({100 * share:.0f} % overlapped speech); AMI {', '.join(p.ami_files)}")
            print(table(rows, p, n))
    if not args.no_speed:
        print(f"speed and memory: start, {uptime()}", file=sys.stderr)
        before = uptime()
        measure_speed(rows, minutes, long_hours)
        after = uptime()
    print()
    print(speed_table(rows, minutes))
    if not args.no_speed:
        print(f"speed and memory runs: {before} before, {after} after (`uptime`; the machine is shared)")
        if not args.no_cold:
            try:
                cold = cold_voiceprints()
                print(f"cold `python -m bot voiceprint CLIP` ({cold['seconds']:g} s clip, {cold['runs']} runs after "
                      f"one that exports the models into a fresh VAR_DIR): median {cold['median']:.2f} s "
                      f"(min {cold['min']:.2f}, max {cold['max']:.2f}; the exporting first run {cold['first']:.2f} s); "
                      f"target ≤ 4 s; {uptime()} after")
            except RuntimeError as exc:
                print(f"cold voiceprint runs failed: {exc}")
    print(f"load average at start {load:.1f}, at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
          f"{threads() or os.cpu_count()} torch threads per system "
          "(other work on the machine inflates RTF and voiceprint time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
