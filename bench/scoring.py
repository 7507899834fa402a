"""Who-spoke-when scores shared by the benchmarks: DER with its three components (pyannote.metrics, collar
0.25, overlap scored) and overlapped-speech recall and precision on a 10 ms grid (no collar)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COLLAR = 0.25


def annotation(segments):
    from pyannote.core import Annotation, Segment

    ann = Annotation()
    for i, (label, start, end) in enumerate(segments):
        if end > start:
            ann[Segment(start, end), i] = label
    return ann


def layers(segments, duration: float, step: float = 0.01) -> np.ndarray:
    """Number of speakers talking in each `step` of [0, duration)."""
    count = np.zeros(int(duration / step) + 2, np.int16)
    for _, s, e in segments:
        count[int(s / step):int(e / step)] += 1
    return count


@dataclass
class Scores:
    """Accumulates files: DER and its parts, overlap recall/precision, speakers found vs true."""

    metric: object = None
    overlap_hit: float = 0.0  # seconds both the reference and the output hold ≥ 2 speakers
    overlap_ref: float = 0.0
    overlap_hyp: float = 0.0
    counts: list[tuple[str, int, int]] = field(default_factory=list)  # (file, found, true)

    def __post_init__(self):
        from pyannote.metrics.diarization import DiarizationErrorRate

        self.metric = DiarizationErrorRate(collar=COLLAR)

    def add(self, name: str, reference, segments, duration: float | None = None) -> None:
        end = max([duration or 0.0] + [e for _, _, e in reference] + [e for _, _, e in segments])
        self.metric(annotation(reference), annotation(segments))
        ref, hyp = layers(reference, end) >= 2, layers(segments, end) >= 2
        self.overlap_hit += float(np.sum(ref & hyp)) * 0.01
        self.overlap_ref += float(np.sum(ref)) * 0.01
        self.overlap_hyp += float(np.sum(hyp)) * 0.01
        self.counts.append((name, len({s for s, _, _ in segments}), len({s for s, _, _ in reference})))

    def part(self, name: str) -> float:
        acc = self.metric.accumulated_
        return 100.0 * acc[name] / max(acc["total"], 1e-9)

    @property
    def der(self) -> float:
        return 100.0 * abs(self.metric)

    @property
    def missed(self) -> float:
        return self.part("missed detection")

    @property
    def false_alarm(self) -> float:
        return self.part("false alarm")

    @property
    def confusion(self) -> float:
        return self.part("confusion")

    @property
    def overlap_recall(self) -> float:
        return 100.0 * self.overlap_hit / max(self.overlap_ref, 1e-9)

    @property
    def overlap_precision(self) -> float:
        return self.overlap_hit / self.overlap_hyp if self.overlap_hyp else float("nan")

    def der_cell(self) -> str:
        return f"{self.der:.1f} ({self.missed:.1f}/{self.false_alarm:.1f}/{self.confusion:.1f})"

    def overlap_cell(self) -> str:
        return f"{self.overlap_recall:.0f} / {self.overlap_precision:.2f}"

    def count_cell(self, short: bool = False) -> str:
        """`06:3/3 07:4/4` per file; with `short` (many files of one true count) the found counts as digits."""
        if short and len({t for _, _, t in self.counts}) == 1:
            right = sum(f == t for _, f, t in self.counts)
            return f"{''.join(str(min(f, 9)) for _, f, _ in self.counts)} (true {self.counts[0][2]}; {right} right)"
        return " ".join(f"{n[-2:] if n.startswith('trn') else n[:6]}:{f}/{t}" for n, f, t in self.counts)


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


def render(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(b) for b in body])
