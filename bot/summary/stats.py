"""Talk-time statistics per speaker from an identify output (pure: no I/O, no Slack).

A speaker is keyed by its diarization label (`SPEAKER_00`), which never changes; who that speaker is
comes from the engine's match alone. People's corrections are kept per recording in a relabel map:

- `speaker → None`: "Not me" by the person the engine named, or a claim undone: the speaker is unknown.
- `speaker → user id`: "This is me": that person *claims* the speaker. A claim names nobody: the speaker
  stays unknown (`user_id` None) with `claimed_by` set, and it never feeds any voiceprint. Only the clicker
  can claim for themself, so the stored user id is also the claimant (rows written before claims were shown
  as claims read the same way).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bot.schema import IdentifyOutput, SpeakerTurn

# Pauses shorter than this inside one person's speech do not end their turn.
TURN_GAP_SECONDS = 1.0

# Sentinel in a relabel map: "this speaker is nobody we know".
UNKNOWN = None


@dataclass(frozen=True)
class SpeakerStats:
    speaker: str
    user_id: str | None
    confidence: float | None
    talk_time: float
    share: float
    turns: int
    longest_turn: float
    unknown_index: int | None = None
    claimed_by: str | None = None

    @property
    def identified(self) -> bool:
        return self.user_id is not None


@dataclass(frozen=True)
class Summary:
    duration: float
    speakers: list[SpeakerStats]
    segments: list[SpeakerTurn] = field(default_factory=list)
    # Diarize-only (nobody in the channel had enrolled): speakers are "Speaker N", not "Unknown speaker N".
    diarize_only: bool = False

    def by_speaker(self, speaker: str) -> SpeakerStats | None:
        return next((s for s in self.speakers if s.speaker == speaker), None)


def merge_intervals(intervals: list[tuple[float, float]], gap: float = 0.0) -> list[tuple[float, float]]:
    """Union of intervals, also joining those separated by at most `gap` seconds."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def segments_of(output: IdentifyOutput) -> list[SpeakerTurn]:
    """Who spoke when, by diarization label (falls back to the identification track)."""
    if output.diarization:
        return [SpeakerTurn(s.speaker, s.start, s.end) for s in output.diarization]
    return [SpeakerTurn(s.diarization_speaker, s.start, s.end) for s in output.identification]


def identities(output: IdentifyOutput, relabels: dict[str, str | None] | None = None
               ) -> dict[str, tuple[str | None, float | None]]:
    """diarization speaker → (label the engine matched it to, its confidence); any relabel clears the match."""
    found: dict[str, tuple[str | None, float | None]] = {}
    for m in output.voiceprints:
        found[m.speaker] = (m.match, m.confidence.get(m.match) if m.match else None)
    if not output.voiceprints:
        for s in output.identification:
            found.setdefault(s.diarization_speaker, (s.match, None))
    for speaker in relabels or {}:
        found[speaker] = (None, None)
    return found


def claims(relabels: dict[str, str | None] | None) -> dict[str, str]:
    """diarization speaker → the user who claimed it ("This is me")."""
    return {speaker: user for speaker, user in (relabels or {}).items() if user}


def summarize(output: IdentifyOutput, relabels: dict[str, str | None] | None = None,
              duration: float | None = None, *, diarize_only: bool = False) -> Summary:
    """Per-speaker talk time, share, turns and longest turn, ordered by talk time (longest first)."""
    segments = sorted(segments_of(output), key=lambda s: (s.start, s.end))
    who = identities(output, relabels)
    claimed = claims(relabels)
    per_speaker: dict[str, list[tuple[float, float]]] = {}
    for s in segments:
        per_speaker.setdefault(s.speaker, []).append((s.start, s.end))
    talk = {sp: sum(b - a for a, b in merge_intervals(iv)) for sp, iv in per_speaker.items()}
    turns = {sp: merge_intervals(iv, TURN_GAP_SECONDS) for sp, iv in per_speaker.items()}
    total = sum(talk.values()) or 1.0
    first_seen = {sp: min(a for a, _ in iv) for sp, iv in per_speaker.items()}
    unknown_order = sorted((sp for sp in per_speaker if who.get(sp, (None, None))[0] is None),
                           key=lambda sp: (first_seen[sp], sp))
    unknown_index = {sp: i + 1 for i, sp in enumerate(unknown_order)}
    stats = [
        SpeakerStats(
            speaker=sp,
            user_id=who.get(sp, (None, None))[0],
            confidence=who.get(sp, (None, None))[1],
            talk_time=talk[sp],
            share=talk[sp] / total,
            turns=len(turns[sp]),
            longest_turn=max((b - a for a, b in turns[sp]), default=0.0),
            unknown_index=unknown_index.get(sp),
            claimed_by=claimed.get(sp),
        )
        for sp in per_speaker
    ]
    stats.sort(key=lambda s: (-s.talk_time, s.speaker))
    end = max((s.end for s in segments), default=0.0)
    return Summary(duration=max(duration or output.duration or 0.0, end), speakers=stats, segments=segments,
                   diarize_only=diarize_only)


def overview(summary: Summary, window: float) -> list[tuple[float, float, list[tuple[str, float]]]]:
    """Who spoke in each `window`-second slice: [(start, end, [(speaker, seconds) longest first])]."""
    slices = []
    start = 0.0
    while start < summary.duration:
        end = min(start + window, summary.duration)
        spoken: dict[str, float] = {}
        for s in summary.segments:
            overlap = min(end, s.end) - max(start, s.start)
            if overlap > 0:
                spoken[s.speaker] = spoken.get(s.speaker, 0.0) + overlap
        slices.append((start, end, sorted(spoken.items(), key=lambda kv: (-kv[1], kv[0]))))
        start = end
    return slices


def clock(seconds: float) -> str:
    """`0:07`, `12:30`, `1:02:03`: how people read durations."""
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def summary_of(rec) -> Summary:
    """The summary of a stored recording: its engine result, read through its relabels."""
    return summarize(IdentifyOutput.model_validate(rec.result or {}), rec.relabels, rec.duration,
                     diarize_only=bool(getattr(rec, "diarize_only", False)))
