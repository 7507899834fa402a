"""Simulated meetings from LibriSpeech readers with an exact reference, and AMI excerpts with theirs.

A Libri meeting (fixed seed): four readers present — three enrolled, one not — plus two enrolled people who
are absent (one Libri reader, one AMI participant, since the data holds five readers). Turns are utterances
(long ones split in two; in the reference, trimmed to their voiced extent), separated by pauses, with about 15 % of turns overlapping the previous one; each
reader gets a gain between −6 and +3 dB. Enrollment clips are one utterance that the meeting does not use.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SR = 16000
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LIBRI = DATA / "librispeech"
AMI = DATA / "ami"
READERS = ["1688", "1998", "2033", "2414", "2609"]
OVERLAP_SHARE = 0.15
UNKNOWN = "unknown"


def data_available() -> bool:
    return LIBRI.is_dir() and AMI.is_dir()


def read(path: Path) -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=False)
    assert sr == SR, path
    return x


def utterances(reader: str) -> list[Path]:
    return sorted((LIBRI / reader).glob("*.flac"))


@dataclass
class Meeting:
    name: str
    samples: np.ndarray
    reference: list[tuple[str, float, float]]  # (reader, start, end)
    enrollment: dict[str, np.ndarray]  # label → clip samples (present enrolled and absent)
    present: list[str]
    unknown: list[str] = field(default_factory=list)  # present, not enrolled
    absent: list[str] = field(default_factory=list)  # enrolled, not present

    @property
    def duration(self) -> float:
        return len(self.samples) / SR

    def identity_reference(self) -> list[tuple[str, float, float]]:
        """The reference with non-enrolled speakers labelled `unknown` (for IER)."""
        return [(UNKNOWN if spk in self.unknown else spk, s, e) for spk, s, e in self.reference]


def enrollment_clip(rng: random.Random, reader: str) -> tuple[Path, list[Path]]:
    """One utterance of 6–30 s as the clip; the others stay for the meeting."""
    paths = utterances(reader)
    durations = {p: len(read(p)) / SR for p in paths}
    clip = rng.choice([p for p in paths if 6 <= durations[p] <= 30])
    return clip, [p for p in paths if p != clip]


def ami_speaker_clip(file_id: str = "trn06", max_seconds: float = 20.0) -> tuple[str, np.ndarray]:
    """The AMI participant who speaks most in `file_id`, as a clip of the moments they speak alone."""
    ref = load_rttm(AMI / "reference.rttm")[file_id]
    x = read(AMI / f"{file_id}.wav")
    talk: dict[str, float] = {}
    for spk, s, e in ref:
        talk[spk] = talk.get(spk, 0.0) + e - s
    who = max(talk, key=talk.get)
    alone = np.zeros(len(x), bool)
    for spk, s, e in ref:
        if spk == who:
            alone[int(s * SR):int(e * SR)] = True
    for spk, s, e in ref:
        if spk != who:
            alone[int(s * SR):int(e * SR)] = False
    return who, x[alone][: int(max_seconds * SR)]


def libri_meeting(seed: int, minutes: float = 5.0) -> Meeting:
    rng = random.Random(seed)
    order = READERS[:]
    rng.shuffle(order)
    present, absent_reader = order[:4], order[4]
    unknown = present[3]
    enrollment: dict[str, np.ndarray] = {}
    pool: dict[str, list[np.ndarray]] = {}
    for reader in present + [absent_reader]:
        clip, rest = enrollment_clip(rng, reader)
        if reader != unknown:
            enrollment[reader] = read(clip)
        gain = 10 ** (rng.uniform(-6, 3) / 20)
        pieces = []
        for p in rest:
            x = read(p) * gain
            if len(x) > 10 * SR:
                cut = int(rng.uniform(0.4, 0.6) * len(x))
                pieces += [x[:cut], x[cut:]]
            else:
                pieces.append(x)
        pool[reader] = pieces
    ami_label, ami_clip = ami_speaker_clip()
    enrollment[f"AMI-{ami_label}"] = ami_clip

    target = minutes * 60 * SR
    turns: list[tuple[str, np.ndarray]] = []
    cursor = {r: 0 for r in present}
    for r in present:
        rng.shuffle(pool[r])
    total, last = 0, None
    while total < target:
        reader = rng.choice([r for r in present if r != last])
        piece = pool[reader][cursor[reader] % len(pool[reader])]
        cursor[reader] += 1
        turns.append((reader, piece))
        total += len(piece) + int(0.6 * SR)
        last = reader
    return _mix(f"libri-{seed}", rng, turns, enrollment, present, [unknown], [absent_reader, f"AMI-{ami_label}"])


def _mix(name, rng, turns, enrollment, present, unknown, absent) -> Meeting:
    placed, t, prev_end = [], int(rng.uniform(0.5, 1.5) * SR), 0
    for i, (reader, piece) in enumerate(turns):
        if i and rng.random() < OVERLAP_SHARE:
            start = max(0, prev_end - int(rng.uniform(0.5, 1.5) * SR))
        else:
            start = prev_end + int(rng.uniform(0.2, 1.5) * SR) if i else t
        placed.append((reader, start, piece))
        prev_end = max(prev_end, start + len(piece))
    samples = np.zeros(prev_end + SR, np.float32)
    reference = []
    for reader, start, piece in placed:
        samples[start:start + len(piece)] += piece
        lead, tail = voiced_extent(piece)
        reference.append((reader, (start + lead) / SR, (start + tail) / SR))
    np.clip(samples, -1, 1, out=samples)
    return Meeting(name, samples, reference, enrollment, present, unknown, absent)


def voiced_extent(piece: np.ndarray, above_floor_db: float = 10.0, run: int = 3) -> tuple[int, int]:
    """First and last sample of a clean utterance where ≥ `run` 10 ms frames in a row stand `above_floor_db`
    over its noise floor (10th percentile of frame levels).

    LibriSpeech files carry up to half a second of silence at each end; counting it as speech in the
    reference would charge every system for not "hearing" it.
    """
    hop = SR // 100
    frames = piece[: len(piece) // hop * hop].reshape(-1, hop)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = level > np.percentile(level, 10) + above_floor_db
    sustained = np.convolve(loud.astype(int), np.ones(run, int), "valid") == run
    idx = np.flatnonzero(sustained)
    if not len(idx):
        return 0, len(piece)
    return int(idx[0] * hop), int(min(len(piece), (idx[-1] + run) * hop))


def long_meeting(minutes: float = 60.0, seed: int = 100) -> np.ndarray:
    """A long recording for speed and memory: Libri meetings back to back."""
    parts, total = [], 0
    i = 0
    while total < minutes * 60 * SR:
        x = libri_meeting(seed + i).samples
        parts.append(x)
        total += len(x)
        i += 1
    return np.concatenate(parts)[: int(minutes * 60 * SR)]


def load_rttm(path: Path) -> dict[str, list[tuple[str, float, float]]]:
    out: dict[str, list[tuple[str, float, float]]] = {}
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            out.setdefault(f[1], []).append((f[7], start, start + dur))
    return out


def write_wav(path: Path, samples: np.ndarray) -> Path:
    import soundfile as sf

    sf.write(str(path), samples, SR, subtype="PCM_16")
    return path
