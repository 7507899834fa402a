"""Simulated meetings with an exact reference, split into a tuning part and a report part; AMI excerpts likewise.

Honest numbers need two disjoint parts (different people, different AMI files): every threshold and
constant is chosen on TUNING, figures are quoted from REPORT. Each part builds its meetings from its own
people only.

A meeting (fixed seed): four people present — three enrolled, one not — plus two enrolled people who are
absent (one of the part's people and one AMI participant of the part's AMI files). Turns are utterances (long
ones split in two; in the reference, their voiced parts, pauses over 0.5 s left out), separated by pauses; nearly half the turns
start before the previous one ends, so 10–25 % of the speech is overlapped. Each person gets a gain between
−6 and +3 dB. Enrollment clips are utterances that the meeting does not use (8–30 s of them).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

SR = 16000
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LIBRI = DATA / "librispeech"
AMI = DATA / "ami"
SPEAKERS = DATA / "speakers"
CALLS = DATA / "calls"
READERS = ["1688", "1998", "2033", "2414", "2609"]
OVERLAP_TURNS = 0.45  # share of turns that start before the previous one ends
OVERLAP_SECONDS = (1.0, 3.5)  # how far such a turn reaches back into the previous one
CLIP_SECONDS = (8.0, 30.0)  # enrollment clip length
BRIDGE_SECONDS = 0.5  # pauses inside an utterance up to this count as speech in the reference (see voiced_spans)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Part:
    """People and AMI files of one side of the split; `ami_enrolled` gives the absent AMI participant."""

    name: str
    people: tuple[str, ...]
    ami_files: tuple[str, ...]
    ami_enrolled: str
    calls: tuple[str, ...] = ()  # real phone calls in `calls/` (`<name>.flac` with `<name>.rttm`)


TUNING = Part("tuning", ("1688", "1998", "vctk_p225", "vctk_p226", "vctk_p227", "vctk_p228", "vctk_p229",
                         "vctk_p232", "vctk_p287"),
              ("sample", "trn01", "trn02", "trn03", "trn04", "trn05"), "trn05", ("aws_lca_autorepairs_40",))
REPORT = Part("report", ("2033", "2414", "2609", "arctic_bdl", "arctic_clb", "arctic_slt", "ljspeech_LJ"),
              ("trn06", "trn07", "trn08", "trn09"), "trn06")
PARTS = {p.name: p for p in (TUNING, REPORT)}


def data_available() -> bool:
    return LIBRI.is_dir() and AMI.is_dir() and SPEAKERS.is_dir() and CALLS.is_dir()


def call(name: str) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """A phone call's samples and its (derived) reference."""
    return read(CALLS / f"{name}.flac"), load_rttm(CALLS / f"{name}.rttm")[name]


@lru_cache(maxsize=512)
def _read(path: Path) -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=False)
    assert sr == SR, path
    x.flags.writeable = False
    return x


def read(path: Path) -> np.ndarray:
    return _read(Path(path)).copy()


def utterances(person: str) -> list[Path]:
    folder = LIBRI / person if person.isdigit() else SPEAKERS / person
    return sorted(folder.glob("*.flac"))


def sentence(path: Path) -> str | None:
    """VCTK people read the same sentences (p225_003 and p226_003): the shared sentence id, else None."""
    stem = path.stem
    return stem.rsplit("_", 1)[-1] if stem.startswith("vctk_") else None


@dataclass
class Meeting:
    name: str
    samples: np.ndarray
    reference: list[tuple[str, float, float]]  # (person, start, end)
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


def enrollment_clip(rng: random.Random, person: str) -> tuple[np.ndarray, list[Path]]:
    """Utterances (shuffled) joined until the clip holds 8–30 s; the others stay for the meeting."""
    paths = utterances(person)
    rng.shuffle(paths)
    clip: list[Path] = []
    used = 0
    for p in paths:
        n = len(read(p))
        if used + n > CLIP_SECONDS[1] * SR:
            continue
        clip.append(p)
        used += n
        if used >= CLIP_SECONDS[0] * SR:
            break
    return np.concatenate([read(p) for p in clip]), sorted(p for p in paths if p not in clip)


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


def meeting(part: Part, seed: int, minutes: float = 2.5, people: int = 4) -> Meeting:
    """One simulated meeting of `part`'s people (see the module docstring); `people` present (4 by default; the
    last of them not enrolled), named `<part>-<seed>` for four, `<part>-<people>p-<seed>` otherwise."""
    rng = random.Random(f"{part.name}-{seed}" if people == 4 else f"{part.name}-{people}p-{seed}")
    order = list(part.people)
    rng.shuffle(order)
    present, absent_person = order[:people], order[people]
    unknown = present[-1]
    enrollment: dict[str, np.ndarray] = {}
    pool: dict[str, list[tuple[np.ndarray, str | None]]] = {}
    for person in present + [absent_person]:
        clip, rest = enrollment_clip(rng, person)
        if person != unknown:
            enrollment[person] = clip
        gain = 10 ** (rng.uniform(-6, 3) / 20)
        pieces = []
        for p in rest:
            x = read(p) * gain
            if len(x) > 10 * SR:
                cut = int(rng.uniform(0.4, 0.6) * len(x))
                pieces += [(x[:cut], sentence(p)), (x[cut:], sentence(p))]
            else:
                pieces.append((x, sentence(p)))
        pool[person] = pieces
    ami_label, ami_clip = ami_speaker_clip(part.ami_enrolled)
    enrollment[f"AMI-{ami_label}"] = ami_clip

    target = minutes * 60 * SR
    turns: list[tuple[str, np.ndarray]] = []
    cursor = {r: 0 for r in present}
    for r in present:
        rng.shuffle(pool[r])
    total, last, last_sentence = 0, None, None
    while total < target:
        person = rng.choice([r for r in present if r != last])
        pieces = pool[person]
        piece, said = pieces[cursor[person] % len(pieces)]
        if said is not None and said == last_sentence:  # never the same sentence twice in a row
            cursor[person] += 1
            piece, said = pieces[cursor[person] % len(pieces)]
        cursor[person] += 1
        turns.append((person, piece))
        total += len(piece) + int(0.6 * SR)
        last, last_sentence = person, said
    return _mix(f"{part.name}-{seed}" if people == 4 else f"{part.name}-{people}p-{seed}", rng, turns, enrollment,
                present, [unknown],
                [absent_person, f"AMI-{ami_label}"])


def libri_meeting(seed: int, minutes: float = 2.5) -> Meeting:
    """A tuning-part meeting (tests use these; the report part is only for benchmark figures)."""
    return meeting(TUNING, seed, minutes)


def _mix(name, rng, turns, enrollment, present, unknown, absent) -> Meeting:
    placed, t, prev_end = [], int(rng.uniform(0.5, 1.5) * SR), 0
    for i, (person, piece) in enumerate(turns):
        if i and rng.random() < OVERLAP_TURNS:
            reach = int(rng.uniform(*OVERLAP_SECONDS) * SR)
            start = max(placed[-1][1] + SR // 2, prev_end - reach)
        else:
            start = prev_end + int(rng.uniform(0.2, 1.5) * SR) if i else t
        placed.append((person, start, piece))
        prev_end = max(prev_end, start + len(piece))
    samples = np.zeros(prev_end + SR, np.float32)
    reference = []
    for person, start, piece in placed:
        samples[start:start + len(piece)] += piece
        reference += [(person, (start + a) / SR, (start + b) / SR) for a, b in voiced_spans(piece)]
    np.clip(samples, -1, 1, out=samples)
    return Meeting(name, samples, reference, enrollment, present, unknown, absent)


def overlap_share(reference: list[tuple[str, float, float]], step: float = 0.01) -> float:
    """Share of the speech time (any speaker) where two or more people speak."""
    end = max(e for _, _, e in reference)
    count = np.zeros(int(end / step) + 2, np.int16)
    for _, s, e in reference:
        count[int(s / step):int(e / step)] += 1
    speech = np.count_nonzero(count)
    return float(np.count_nonzero(count >= 2) / speech) if speech else 0.0


def voiced_spans(piece: np.ndarray, bridge: float = BRIDGE_SECONDS, above_floor_db: float = 10.0,
                 run: int = 3) -> list[tuple[int, int]]:
    """(first, end) samples of the talk in a clean utterance: runs of ≥ `run` 10 ms frames standing
    `above_floor_db` over its noise floor (10th percentile of frame levels), pauses up to `bridge` seconds
    bridged.

    LibriSpeech files carry up to half a second of silence at each end and readers pause inside sentences
    (the report part's LibriSpeech readers for 7 % of their utterance time in pauses over 0.5 s): counting a
    pause as speech in the reference would charge every system for hearing the silence. Bridging 0.5 s forgives
    what NIST's RT scoring forgives (pauses ≤ 0.3 s bridged, then ±0.25 s collars: any pause ≤ 0.5 s), since
    pyannote.metrics' `collar=0.25` is ±0.125 s; the AMI references likewise keep almost no pause under 0.8 s.
    """
    hop = SR // 100
    frames = piece[: len(piece) // hop * hop].reshape(-1, hop)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = level > np.percentile(level, 10) + above_floor_db
    sustained = np.convolve(loud.astype(int), np.ones(run, int), "valid") == run
    idx = np.flatnonzero(sustained)
    if not len(idx):
        return [(0, len(piece))]
    voiced = np.zeros(len(loud) + 2, bool)
    for k in range(run):
        voiced[idx + k + 1] = True
    edges = np.diff(voiced.astype(np.int8))
    spans = list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))
    merged = [list(spans[0])]
    for a, b in spans[1:]:
        if a - merged[-1][1] <= bridge * 100:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return [(int(a * hop), int(min(len(piece), b * hop))) for a, b in merged]


def long_meeting(minutes: float = 60.0, seed: int = 100) -> np.ndarray:
    """A long recording for speed and memory: tuning-part meetings back to back."""
    parts, total = [], 0
    i = 0
    while total < minutes * 60 * SR:
        x = meeting(TUNING, seed + i, 5.0).samples
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
