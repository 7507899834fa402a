"""A clip of one speaker cut from a recording, to enroll from it ("This is me"); at most 30 s of clean speech."""
from __future__ import annotations

from pathlib import Path

from bot.summary.stats import Segment, merge_intervals

MAX_CLIP_SECONDS = 29.0
MIN_SPAN_SECONDS = 1.0


def solo_spans(segments: list[Segment], speaker: str, *, max_seconds: float = MAX_CLIP_SECONDS
               ) -> list[tuple[float, float]]:
    """Stretches where only `speaker` talks (overlap removed), longest first, up to `max_seconds` in all."""
    own = merge_intervals([(s.start, s.end) for s in segments if s.speaker == speaker])
    others = merge_intervals([(s.start, s.end) for s in segments if s.speaker != speaker])
    solo: list[tuple[float, float]] = []
    for start, end in own:
        cursor = start
        for o_start, o_end in others:
            if o_end <= cursor or o_start >= end:
                continue
            if o_start > cursor:
                solo.append((cursor, o_start))
            cursor = max(cursor, o_end)
        if cursor < end:
            solo.append((cursor, end))
    chosen, total = [], 0.0
    for start, end in sorted(solo, key=lambda se: se[0] - se[1]):
        if end - start < MIN_SPAN_SECONDS or total >= max_seconds:
            continue
        end = min(end, start + max_seconds - total)
        chosen.append((start, end))
        total += end - start
    return sorted(chosen)


def write_speaker_clip(source: Path, spans: list[tuple[float, float]], dest: Path) -> float:
    """Decode `source`, keep `spans`, write a 16 kHz 16-bit WAV; returns its duration. CPU work: run in a pool."""
    import wave

    import numpy as np

    from bot.engines.audio import decode

    audio = decode(source)
    rate = audio.sample_rate
    parts = [audio.samples[int(a * rate): int(b * rate)] for a, b in spans]
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    with wave.open(str(dest), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return len(samples) / rate
