"""Words → speakers → turns (pure: no I/O, no models).

Each recognised word goes to the speaker of the exclusive-diarization turn holding its midpoint, or to the
nearest turn when the midpoint falls in a gap (Whisper's word boundaries and the VAD's disagree by a few
hundred milliseconds at turn edges). Consecutive words of one speaker form a transcript turn.
"""
from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.schema import SpeakerTurn, TranscriptionSegment
from bot.transcription.recognizer import Transcription, Word

# A pause this long inside one person's speech starts a new paragraph (turn) of the transcript.
TURN_PAUSE_SECONDS = 2.0


class Timed(Protocol):
    speaker: str
    start: float
    end: float


@dataclass(frozen=True)
class SpokenWord:
    start: float
    end: float
    text: str
    speaker: str | None

    @property
    def midpoint(self) -> float:
        return (self.start + self.end) / 2


@dataclass(frozen=True)
class TranscriptTurn:
    speaker: str | None
    words: tuple[SpokenWord, ...]

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return self.words[-1].end

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


def exclusive_turns(segments: Iterable[Timed]) -> list[SpeakerTurn]:
    """One speaker at a time from an overlapping diarization: in an overlap the speaker who already holds
    the floor keeps it until their segment ends (otherwise the one whose segment started first)."""
    segs = sorted(((s.start, s.end, s.speaker) for s in segments if s.end > s.start), key=lambda t: t[:2])
    bounds = sorted({t for s, e, _ in segs for t in (s, e)})
    out: list[SpeakerTurn] = []
    active: list[tuple[float, float, str]] = []
    nxt, holder = 0, None
    for left, right in itertools.pairwise(bounds):
        active = [a for a in active if a[1] > left]
        while nxt < len(segs) and segs[nxt][0] <= left:
            active.append(segs[nxt])
            nxt += 1
        if not active:
            holder = None
            continue
        speakers = {a[2] for a in active}
        if holder not in speakers:
            holder = min(active, key=lambda a: (a[0], a[2]))[2]
        if out and out[-1].speaker == holder and out[-1].end >= left:
            out[-1] = SpeakerTurn(holder, out[-1].start, right)
        else:
            out.append(SpeakerTurn(holder, left, right))
    return out


def speaker_at(t: float, turns: Sequence[SpeakerTurn], starts: Sequence[float] | None = None) -> str | None:
    """Speaker of the (non-overlapping, sorted) turn holding `t`, else of the nearest turn; None if no turns."""
    if not turns:
        return None
    starts = starts if starts is not None else [turn.start for turn in turns]
    i = bisect.bisect_right(starts, t) - 1
    if i >= 0 and t < turns[i].end:
        return turns[i].speaker
    before = turns[i] if i >= 0 else None
    after = turns[i + 1] if i + 1 < len(turns) else None
    if before is None or (after is not None and after.start - t < t - before.end):
        return after.speaker
    return before.speaker


def attribute(words: Iterable[Word], turns: Sequence[SpeakerTurn]) -> list[SpokenWord]:
    turns = sorted(turns, key=lambda t: t.start)
    starts = [t.start for t in turns]
    return [SpokenWord(w.start, w.end, w.text, speaker_at((w.start + w.end) / 2, turns, starts)) for w in words]


def group_turns(words: Iterable[SpokenWord], pause: float = TURN_PAUSE_SECONDS) -> list[TranscriptTurn]:
    """Consecutive words of one speaker, split where they pause for `pause` seconds or more."""
    groups: list[list[SpokenWord]] = []
    for w in words:
        last = groups[-1][-1] if groups else None
        if last is not None and last.speaker == w.speaker and w.start - last.end < pause:
            groups[-1].append(w)
        else:
            groups.append([w])
    return [TranscriptTurn(g[0].speaker, tuple(g)) for g in groups]


def transcription_wire(turns: Sequence[TranscriptTurn], labels: dict[str, str] | None = None) -> dict:
    """pyannoteAI's `turnLevelTranscription` and `wordLevelTranscription`; `labels` renames speakers (e.g.
    diarization label → identified voiceprint label)."""
    labels = labels or {}

    def seg(speaker: str | None, start: float, end: float, text: str) -> dict:
        name = labels.get(speaker, speaker) if speaker is not None else None
        return TranscriptionSegment(speaker=name, start=start, end=end, text=text).wire()

    return {
        "turnLevelTranscription": [seg(t.speaker, t.start, t.end, t.text) for t in turns],
        "wordLevelTranscription": [seg(w.speaker, w.start, w.end, w.text) for t in turns for w in t.words],
    }


def exclusive_of(output) -> list[SpeakerTurn]:
    """The identify output's `exclusiveDiarization` when the engine gave one, else derived from `diarization`."""
    given = getattr(output, "exclusive_diarization", None)
    if given:
        return [SpeakerTurn(s.speaker, s.start, s.end) for s in given]
    return exclusive_turns(output.diarization)


def identified_labels(output) -> dict[str, str]:
    """diarization speaker → the voiceprint label it was matched to (matched speakers only; none for a
    diarize output)."""
    labels = {m.speaker: m.match for m in getattr(output, "voiceprints", ()) if m.match}
    for s in getattr(output, "identification", ()):
        if s.match:
            labels.setdefault(s.diarization_speaker, s.match)
    return labels


def transcribed_output(output, transcription: Transcription) -> dict:
    """An identify or diarize output (the schema's model) with its transcription, as pyannoteAI names the
    fields: `exclusiveDiarization` (the turns the words were attributed to), `language`,
    `turnLevelTranscription` and `wordLevelTranscription`, an identified speaker under its voiceprint label.
    What `python -m bot transcribe` prints and an engine-server job with `transcription: true` returns."""
    exclusive = exclusive_of(output)
    turns = group_turns(attribute(transcription.words, exclusive))
    result = output.wire()
    result["exclusiveDiarization"] = [{"speaker": t.speaker, "start": t.start, "end": t.end} for t in exclusive]
    result["language"] = transcription.language
    result.update(transcription_wire(turns, identified_labels(output)))
    return result


def transcript_result(result: dict, words: Iterable[Word]) -> dict:
    """The identify output `result` with the recognised words attributed to its diarization speakers added
    (`turnLevelTranscription`, `wordLevelTranscription`, speakers as diarization labels)."""
    from bot.schema import IdentifyOutput

    turns = group_turns(attribute(words, exclusive_of(IdentifyOutput.model_validate(result))))
    return {**result, **transcription_wire(turns)}
