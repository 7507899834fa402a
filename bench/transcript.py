"""Transcript benchmark: `python -m bench.transcript [--meetings N] [--minutes M] [--latency-minutes L]
[--long-hours H [--long-whole]]` (0 skips a part).

- Word-level speaker attribution on simulated Libri meetings (bench.meetings, fixed seeds): the share of
  recognised words whose speaker matches the reference (the reader whose reference turn holds the word's
  midpoint, or the nearest turn; in an overlap either reader counts). "mapped" scores our diarization
  speakers after the best one-to-one mapping onto readers; "named" scores the names the summary would show
  (enrolled readers by label, everyone else "unknown"). Ceiling column: the same words attributed with the
  reference turns themselves, the best that recognition timing allows.
- Recognition RTF, model load time and peak RSS per model, each in a fresh child process over the same
  meetings; the word disagreement of each model with base (no reference text ships with the data). Base is
  run three ways: the whole file at once (the path before recognition streamed: baseline row), streamed as
  the worker runs it (meetings shorter than a piece are one piece), and streamed in 60 s pieces so that the
  cuts are exercised on the scored meetings.
- The recognizer process's peak RSS on one long recording (4 h by default: the tuning part's meetings back
  to back with pauses, written to the temporary folder only), the whole file at once (baseline: through its
  first 10 min of words, where its peak is already reached, unless --long-whole) and as the worker streams it
  (the whole run), each in a fresh process.
- Upload→summary and upload→transcript on one long recording (10 min by default) with warm workers:
  the summary-only path (identify alone) as the baseline row, then identify and recognition started
  together as the bot runs them (the summary does not wait for recognition).
The load average is printed with the figures: other work on the machine inflates every time.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from bench import meetings as M
from bench.engine import peak_rss_mb

MODELS = ("base", "tiny.en")
ROOT = Path(__file__).resolve().parents[1]


# ---- child: one model, fresh process -------------------------------------------------------------------


WHOLE = "whole"  # the path before streaming: decode it all, normalise it all, recognise it in one call
WHOLE_PREFIX = "whole-prefix"  # the same, stopped after PREFIX_SECONDS of the recording's words (see long_report)
PREFIX_SECONDS = 600.0
STREAMED = "streamed"  # the worker's path (`transcribe_file`); a number: the same in pieces of that many seconds


class _Enough(Exception):
    pass


def _stop_after_prefix(end: float) -> None:
    if end >= PREFIX_SECONDS:
        raise _Enough


def recognize_child(model: str, how: str, wavs: list[str], var_dir: str) -> dict:
    from bot.speech.audio import decode, normalise_level
    from bot.transcription.recognizer import Recognizer, transcribe_file

    t = time.perf_counter()
    recognizer = Recognizer(model, Path(var_dir), "en")
    if how not in (WHOLE, WHOLE_PREFIX, STREAMED):
        recognizer.chunk_seconds = float(how)
    load_s = time.perf_counter() - t
    words, audio_s, busy_s = [], 0.0, 0.0
    for wav in wavs:
        t = time.perf_counter()
        if how == WHOLE_PREFIX:
            try:
                recognizer.recognize(normalise_level(decode(Path(wav)).samples), "en", _stop_after_prefix)
            except _Enough:
                pass
            return {"load_s": load_s, "rtf": float("nan"), "rss_mb": peak_rss_mb(), "words": [[]]}
        if how == WHOLE:
            result = recognizer.transcribe(normalise_level(decode(Path(wav)).samples))
        else:
            result = transcribe_file(lambda: recognizer, Path(wav), None)
        busy_s += time.perf_counter() - t
        audio_s += result.duration
        words.append([[w.start, w.end, w.text] for w in result.words])
    return {"load_s": load_s, "rtf": busy_s / audio_s, "rss_mb": peak_rss_mb(), "words": words}


def run_child(model: str, how: str, wavs: list[Path], var_dir: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.transcript", "--child", model, how, str(var_dir),
                          *map(str, wavs)], capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- scoring (pure) ------------------------------------------------------------------------------------


def reference_speakers(mid: float, reference: list[tuple[str, float, float]]) -> set[str]:
    """Readers whose reference turn holds `mid`; else the reader of the nearest turn."""
    active = {spk for spk, s, e in reference if s <= mid <= e}
    if active:
        return active
    return {min(reference, key=lambda r: min(abs(mid - r[1]), abs(mid - r[2])))[0]}


def best_mapping(pairs: list[tuple[str | None, set[str]]]) -> dict[str, str]:
    """System speaker → reader, one to one, maximising the words counted right (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    hyp = sorted({h for h, _ in pairs if h is not None})
    ref = sorted({r for _, rs in pairs for r in rs})
    if not hyp or not ref:
        return {}
    counts = np.zeros((len(hyp), len(ref)))
    for h, rs in pairs:
        if h is not None:
            for r in rs:
                counts[hyp.index(h), ref.index(r)] += 1
    rows, cols = linear_sum_assignment(-counts)
    return {hyp[i]: ref[j] for i, j in zip(rows, cols)}


def accuracy(pairs: list[tuple[str | None, set[str]]], mapping: dict[str, str] | None = None) -> tuple[int, int]:
    mapping = mapping if mapping is not None else {}
    right = sum(1 for h, rs in pairs if (mapping.get(h, h) if h is not None else None) in rs)
    return right, len(pairs)


# ---- accuracy ------------------------------------------------------------------------------------------


def identify(models, meeting: M.Meeting):
    from bot.schema import Matching, VoiceprintInput
    from bot.speech import tasks
    from bot.speech.audio import Audio
    from bot.speech.matching import RECOMMENDED_THRESHOLD

    prints = [VoiceprintInput(label=label, voiceprint=tasks.make_voiceprint(models, Audio(clip)).voiceprint)
              for label, clip in meeting.enrollment.items()]
    return tasks.identify(models, Audio(meeting.samples), prints, Matching(threshold=RECOMMENDED_THRESHOLD))


def score_meeting(meeting: M.Meeting, output, words: list[list]) -> dict[str, tuple[int, int]]:
    from bot.schema import SpeakerTurn
    from bot.transcription.attribution import (
        attribute,
        exclusive_of,
        exclusive_turns,
        identified_labels,
    )
    from bot.transcription.recognizer import Word

    ws = [Word(s, e, t) for s, e, t in words]
    ref = meeting.reference
    truth = [reference_speakers((w.start + w.end) / 2, ref) for w in ws]
    ours = attribute(ws, exclusive_of(output))
    mapped = list(zip((w.speaker for w in ours), truth))
    names = identified_labels(output)
    named_truth = [{M.UNKNOWN if r in meeting.unknown else r for r in rs} for rs in truth]
    named = [(names.get(w.speaker, M.UNKNOWN), rs) for w, rs in zip(ours, named_truth)]
    oracle_turns = exclusive_turns([SpeakerTurn(r, s, e) for r, s, e in ref])
    oracle = list(zip((w.speaker for w in attribute(ws, oracle_turns)), truth))
    return {"mapped": accuracy(mapped, best_mapping(mapped)), "named": accuracy(named),
            "oracle": accuracy(oracle)}


def pct(parts: list[tuple[int, int]]) -> str:
    right, total = sum(p[0] for p in parts), sum(p[1] for p in parts)
    return f"{100 * right / total:.1f}" if total else "-"


def disagreement(a: list[list], b: list[list]) -> float:
    """Word edit distance of `a` against `b`, over b's length (case and punctuation ignored). One numpy row at a
    time (insertions by a running minimum), so 4 hours of words take seconds."""
    def norm(ws):
        return ["".join(c for c in w[2].lower() if c.isalnum() or c == "'") for w in ws]
    x, y = norm(a), norm(b)
    ids = {w: i for i, w in enumerate(set(x) | set(y))}
    ys = np.array([ids[w] for w in y], np.int64)
    offsets = np.arange(len(y) + 1)
    d = offsets.copy()
    for i, w in enumerate(x, 1):
        row = np.empty_like(d)
        row[0] = i
        row[1:] = np.minimum(d[1:] + 1, d[:-1] + (ys != ids[w]))
        d = np.minimum.accumulate(row - offsets) + offsets
    return int(d[-1]) / max(1, len(y))


# ---- latency -------------------------------------------------------------------------------------------


async def latency(wav: Path, var_dir: Path, model: str) -> list[tuple[str, float, float | None]]:
    """(path, upload→summary s, upload→transcript s) with warm workers; the first row is summary only."""
    from bot.engines.local import LocalEngine
    from bot.schema import IdentifyRequest, VoiceprintRequest
    from bot.summary.stats import summarize
    from bot.summary.transcript import render_markdown, render_vtt, speaker_names
    from bot.transcription import attribution
    from bot.transcription.recognizer import TranscriptionWorker

    engine, worker = LocalEngine(workers=1), TranscriptionWorker(model, var_dir, "en")
    rows = []
    try:
        await asyncio.gather(engine.start(), worker.start())
        var_dir.mkdir(parents=True, exist_ok=True)
        clip = M.write_wav(var_dir / "clip.wav", enrollment_clip())
        vp = (await engine.wait((await engine.submit_voiceprint(VoiceprintRequest(url=str(clip)))).job_id))
        request = IdentifyRequest(url=str(wav), voiceprints=[{"label": "1998",
                                                               "voiceprint": vp.voiceprint_output().voiceprint}])

        async def identify(path: Path):
            job = await engine.submit_identify(request.model_copy(update={"url": str(path)}))
            return (await engine.wait(job.job_id, poll=0.05)).identify_output()

        await asyncio.gather(identify(clip), worker.transcribe(clip))  # first-call costs
        t = time.perf_counter()
        await identify(wav)
        rows.append(("summary only (baseline)", time.perf_counter() - t, None))
        t = time.perf_counter()
        recognition = asyncio.ensure_future(worker.transcribe(wav))
        output = await identify(wav)
        summary_s = time.perf_counter() - t
        words = (await recognition).words
        turns = attribution.group_turns(attribution.attribute(words, attribution.exclusive_of(output)))
        names = speaker_names(summarize(output))
        _files = render_markdown("meeting", turns, names), render_vtt(turns, names)
        rows.append((f"summary + transcript ({model})", summary_s, time.perf_counter() - t))
    finally:
        await asyncio.gather(engine.close(), worker.close())
    return rows


def enrollment_clip() -> np.ndarray:
    return M.read(M.utterances("1998")[0])


# ---- main ----------------------------------------------------------------------------------------------


def table(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, body)])


def variants(models: list[str]) -> list[tuple[str, str, str]]:
    """(row name, model, how) for the accuracy table: base whole (baseline) first when base is asked for."""
    rows = []
    for model in models:
        if model == "base":
            rows += [("base, whole file (before, baseline)", model, WHOLE), ("base, streamed", model, STREAMED),
                     ("base, streamed in 60 s pieces", model, "60")]
        else:
            rows.append((f"{model}, streamed", model, STREAMED))
    return rows


def accuracy_report(args, tmp: Path) -> None:
    print(f"building {args.meetings} meetings of {args.minutes:g} min ...", file=sys.stderr)
    meetings = [M.libri_meeting(seed, args.minutes) for seed in range(args.meetings)]
    wavs = [M.write_wav(tmp / f"{m.name}.wav", m.samples) for m in meetings]
    results = {}
    for name, model, how in variants(args.models):
        print(f"{name}: recognition in a fresh process ...", file=sys.stderr)
        results[name] = run_child(model, how, wavs, tmp / "var")
    print("diarizing and identifying ...", file=sys.stderr)
    from bot.speech.windows import SpeakerModels

    models = SpeakerModels()
    outputs = [identify(models, m) for m in meetings]
    base = next(iter(results.values()))
    body = []
    for name, r in results.items():
        if "error" in r:
            body.append([name, *["-"] * 8, r["error"]])
            continue
        scores = [score_meeting(m, o, w) for m, o, w in zip(meetings, outputs, r["words"])]
        agree = ("-" if r is base or "error" in base else
                 f"{100 * np.mean([disagreement(a, b) for a, b in zip(r['words'], base['words'])]):.1f}")
        body.append([name, pct([s['mapped'] for s in scores]), pct([s['named'] for s in scores]),
                     pct([s['oracle'] for s in scores]), str(sum(len(w) for w in r["words"])),
                     f"{r['rtf']:.3f}", f"{r['load_s']:.1f}", f"{r['rss_mb']:.0f}", agree])
    print(table(["recognition", "words right % (mapped)", "named %", "with reference turns % (ceiling)", "words",
                 "RTF", "load s", "peak RSS MB", f"word diff vs {next(iter(results))} %"], body))
    print(f"({len(meetings)} meetings × {args.minutes:g} min, int8, {os.cpu_count()} cores)")


def long_recording(path: Path, hours: float, seed: int = 100) -> Path:
    """The tuning part's 5-min meetings back to back with 5–40 s pauses between them, written block by block
    (real speech; a temporary file, never in the repository)."""
    import random

    import soundfile as sf

    rng, total, written, i = random.Random(seed), int(hours * 3600 * M.SR), 0, 0
    with sf.SoundFile(str(path), "w", M.SR, 1, "PCM_16") as f:
        while written < total:
            pause = np.zeros(int(rng.uniform(5, 40) * M.SR), np.float32)
            for part in (M.meeting(M.TUNING, seed + i, 5.0).samples, pause):
                part = part[: total - written]
                f.write(part)
                written += len(part)
            i += 1
    return path


def long_report(args, tmp: Path) -> None:
    """The recognizer process's peak RSS on one long recording, whole file (baseline) and streamed.

    The whole-file baseline is run through its first PREFIX_SECONDS of words only (unless --long-whole): it
    holds the whole recording, its VAD and its features from the start of recognition to the end, so its peak
    is reached by then (the figure is a lower bound), and the two full runs would take hours on a shared
    2-core machine. The streamed row is the full run."""
    model = args.models[0]
    print(f"writing a {args.long_hours:g} h recording ...", file=sys.stderr)
    wav = long_recording(tmp / "long-recording.wav", args.long_hours)
    rows = {}
    whole = ((f"whole file at once (before, baseline; first {PREFIX_SECONDS / 60:g} min of words)", WHOLE_PREFIX)
             if not args.long_whole else ("whole file at once (before, baseline)", WHOLE))
    for name, how in (whole, ("streamed as the worker runs it", STREAMED)):
        print(f"{args.long_hours:g} h, {name} ...", file=sys.stderr)
        t = time.perf_counter()
        rows[name] = {**run_child(model, how, [wav], tmp / "var"), "wall_s": time.perf_counter() - t}
    whole, body = next(iter(rows.values())), []
    for name, r in rows.items():
        if "error" in r:
            body.append([name, "-", "-", "-", "-", r["error"]])
            continue
        diff = ("-" if r is whole or "error" in whole or not whole["words"][0] else
                f"{100 * disagreement(r['words'][0], whole['words'][0]):.2f}")
        body.append([name, f"{r['rss_mb']:.0f}", "-" if np.isnan(r["rtf"]) else f"{r['rtf']:.3f}",
                     f"{r['wall_s'] / 60:.1f}", str(len(r["words"][0]) or "-"), diff])
    print(table([f"recognizer process ({args.long_hours:g} h recording, {model})", "peak RSS MB", "RTF",
                 "wall min", "words", "word diff vs whole file %"], body))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transcript", description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=2, help="simulated Libri meetings (default 2; 0 skips)")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of each meeting (default 3)")
    parser.add_argument("--latency-minutes", type=float, default=10.0,
                        help="length of the upload→transcript recording (default 10; 0 skips it)")
    parser.add_argument("--long-hours", type=float, default=4.0,
                        help="length of the recording for the recognizer's peak RSS (default 4, about 20 min "
                             "on 2 idle cores; 0 skips it)")
    parser.add_argument("--long-whole", action="store_true",
                        help="run the long recording's whole-file baseline to its end (hours on 2 cores)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.child:
        print(json.dumps(recognize_child(args.child[0], args.child[1], args.child[3:], args.child[2])))
        return 0
    if not M.data_available():
        print(f"The speech data is missing ({M.DATA}); nothing to benchmark.", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.meetings > 0:
            accuracy_report(args, tmp)
        if args.latency_minutes > 0:
            model = args.models[0]
            print(f"latency on {args.latency_minutes:g} min ...", file=sys.stderr)
            wav = M.write_wav(tmp / "long.wav", M.long_meeting(args.latency_minutes))
            rows = asyncio.run(latency(wav, tmp / "var", model))
            print(table([f"path ({args.latency_minutes:g} min recording, warm workers)", "upload→summary s",
                         "upload→transcript s"],
                        [[p, f"{s:.1f}", "-" if t is None else f"{t:.1f}"] for p, s, t in rows]))
        if args.long_hours > 0:
            long_report(args, tmp)
    print(f"load average at start {load:.1f}, at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(other work on the machine inflates RTF and every time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
