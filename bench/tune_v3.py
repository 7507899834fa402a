"""Tuning v3 on the TUNING part only: `python -m bench.tune_v3 [--grid 'speech=0.3,0.5 counting.threshold=0.6,0.7']`.

The streaming pass (segmentation probabilities, runs, embeddings) and the voiceprints of every tuning file are
computed once and kept under `--cache` (default /tmp/voiceid-v3-cache); the stages after it are pure, so a grid
of their constants runs in seconds per point. It never reads the report part.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import warnings
from pathlib import Path

import numpy as np

from bench import meetings as M
from bench.scoring import Scores

FIELDS = ("starts", "activity", "embeddings", "speech_frames", "parents", "probabilities")


def items(part: M.Part, n: int):
    """(name, kind, samples, reference, enrollment labels→clip or None, meeting or None)."""
    ref = M.load_rttm(M.AMI / "reference.rttm")
    for seed in range(n):
        m = M.meeting(part, seed)
        yield m.name, "meetings", m.samples, m.reference, m
    for people in (2, 3):  # conversations of fewer people, from the same tuning people
        for seed in range(n // 2):
            m = M.meeting(part, seed, people=people)
            yield m.name, f"{people}p", m.samples, m.reference, m
    for f in part.ami_files:
        yield f, "ami", M.read(M.AMI / f"{f}.wav"), ref[f], None
    for c in part.calls:
        x, r = M.call(c)
        yield c, "calls", x, r, None


def cached(cache: Path, name: str, samples: np.ndarray, meeting, models):
    """(LocalResult, voiceprint vectors or None) from the cache, computed on a miss."""
    from bot.speech.diarization import LocalResult

    path = cache / f"{name}.npz"
    if not path.exists():
        models = models()
        local = models.pipeline.local(samples)
        extra = {}
        if meeting is not None:
            from bench.systems import VoiceId

            vid = VoiceId.__new__(VoiceId)
            vid.models = models
            extra["vectors"] = np.stack([vid.voiceprint(meeting.enrollment[k]) for k in meeting.enrollment])
        np.savez(path, **{f: getattr(local, f) for f in FIELDS}, duration=local.duration, peak=local.peak, **extra)
    z = np.load(path)
    local = LocalResult(**{f: z[f] for f in FIELDS}, duration=float(z["duration"]), peak=float(z["peak"]))
    return local, (z.get("vectors", None))


def replace(params, key: str, value):
    head, _, rest = key.partition(".")
    if rest:
        return dataclasses.replace(params, **{head: replace(getattr(params, head), rest, value)})
    kind = type(getattr(params, head))
    return dataclasses.replace(params, **{head: kind(value)})


def evaluate(data, params, anchors: bool = True, hint: bool = False) -> dict[str, Scores]:
    """v3 with `params` (None: v2) on every cached file."""
    from bot.speech.diarization import DiarizationParams, SpeakerDiarization
    from bot.speech.v3.pipeline import diarize

    v2 = SpeakerDiarization.__new__(SpeakerDiarization)
    v2.params = DiarizationParams()
    out = {k: Scores() for k in ("meetings", "2p", "3p", "ami", "calls")}
    for name, kind, local, vectors, reference, _ in data:
        num = len({s for s, _, _ in reference}) if hint else None
        if params is None:
            res = v2.cluster(local, num)
        else:
            res = diarize(local, params, num, anchors=vectors if anchors else None)
        out[kind].add(name, reference, res.segments, local.duration)
    return out


def line(label: str, s: dict[str, Scores]) -> str:
    return (f"{label:40s} meet {s['meetings'].der_cell():22s} ov {s['meetings'].overlap_cell():10s} "
            f"| ami {s['ami'].der_cell():22s} ov {s['ami'].overlap_cell():10s} {s['ami'].count_cell()} "
            f"| call {s['calls'].der_cell()} {s['calls'].count_cell()} | {s['meetings'].count_cell(short=True)}"
            f"\n{'':40s} 2p {s['2p'].der_cell()} {s['2p'].count_cell(short=True)} | 3p {s['3p'].der_cell()} "
            f"{s['3p'].count_cell(short=True)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tune_v3")
    parser.add_argument("--cache", default="/tmp/voiceid-v3-cache")
    parser.add_argument("--meetings", type=int, default=20)
    parser.add_argument("--grid", default="", help="space-separated key=v1,v2 (keys of V3Params, dotted)")
    parser.add_argument("--no-anchors", action="store_true")
    parser.add_argument("--hint", action="store_true")
    parser.add_argument("--cached-only", action="store_true", help="skip files not in the cache yet")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from bot.speech.v3.pipeline import V3Params

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    loaded = []

    def models():
        if not loaded:
            from bot.speech.windows import SpeakerModels

            loaded.append(SpeakerModels(threads=2, diarization="v3"))
        return loaded[0]

    data = []
    for name, kind, samples, reference, meeting in items(M.TUNING, args.meetings):
        if args.cached_only and not (cache / f"{name}.npz").exists():
            continue
        local, vectors = cached(cache, name, samples, meeting, models)
        data.append((name, kind, local, vectors, reference, meeting.present if meeting else None))
    print(line("v2 (baseline)", evaluate(data, None, hint=args.hint)), flush=True)
    grid = [g.split("=") for g in args.grid.split()]
    keys = [k for k, _ in grid]
    for values in itertools.product(*[v.split(",") for _, v in grid]):
        params = V3Params()
        for k, v in zip(keys, values):
            params = replace(params, k, float(v) if "." in v or "e" in v else int(v))
        label = " ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, values)) or "defaults"
        print(line(label, evaluate(data, params, not args.no_anchors, args.hint)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
