"""Transcript files: Markdown for reading, WebVTT for players (pure: text in, text out).

Speakers appear as in the summary: identified people by display name, everyone else as "Speaker N" with
the summary's numbering (with who claimed them). Names and recognised words are untrusted text: each format escapes what would
otherwise be markup, and line breaks become spaces so no text can start a line of its own.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from bot.summary.stats import Summary
from bot.transcription.attribution import SpokenWord, TranscriptTurn, group_turns

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_MD_INLINE = re.compile(r"([\\`*_\[\]~|!#])")
CUE_MAX_SECONDS = 6.0
CUE_MAX_CHARS = 84  # two caption lines


def speaker_names(summary: Summary, display_names: dict[str, str] | None = None) -> dict[str, str]:
    """diarization speaker → what the transcript calls them; `display_names` maps a user id to a name."""
    display_names = display_names or {}

    def name(s) -> str:
        if s.user_id:
            return display_names.get(s.user_id) or s.user_id
        claim = f" (claimed by {display_names.get(s.claimed_by) or s.claimed_by})" if s.claimed_by else ""
        return f"Speaker {s.unknown_index}{claim}"

    return {s.speaker: name(s) for s in summary.speakers}


def _flat(text: object) -> str:
    return " ".join(_CONTROL.sub(" ", str(text)).split())


def _entities(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def md_text(text: object) -> str:
    """Untrusted text as inert Markdown inline text (no emphasis, links, images, HTML or code)."""
    return _entities(_MD_INLINE.sub(r"\\\1", _flat(text)))


def vtt_text(text: object) -> str:
    """Untrusted text as WebVTT cue text: tags, entities and `-->` cannot form."""
    return _entities(_flat(text))


def _name(speaker: str | None, names: dict[str, str]) -> str:
    return names.get(speaker, "Unknown speaker") if speaker is not None else "Unknown speaker"


def clock(seconds: float) -> str:
    """H:MM:SS, as a person reads a meeting's time."""
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def vtt_time(seconds: float) -> str:
    ms = round(max(0.0, seconds) * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def render_markdown(title: str, turns: Sequence[TranscriptTurn], names: dict[str, str]) -> str:
    lines = [f"# Transcript: {md_text(title)}", ""]
    for turn in turns:
        lines += [f"**{clock(turn.start)} {md_text(_name(turn.speaker, names))}:** {md_text(turn.text)}", ""]
    if not turns:
        lines += ["*No speech was recognised.*", ""]
    return "\n".join(lines)


def cues(turn: TranscriptTurn) -> list[tuple[SpokenWord, ...]]:
    """A turn's words cut into caption-sized pieces (≤ CUE_MAX_SECONDS, ≤ CUE_MAX_CHARS)."""
    out: list[list[SpokenWord]] = []
    for w in turn.words:
        cur = out[-1] if out else None
        if cur and (w.end - cur[0].start <= CUE_MAX_SECONDS
                    and sum(len(x.text) + 1 for x in cur) + len(w.text) <= CUE_MAX_CHARS):
            cur.append(w)
        else:
            out.append([w])
    return [tuple(c) for c in out]


def render_vtt(turns: Sequence[TranscriptTurn], names: dict[str, str]) -> str:
    blocks = ["WEBVTT"]
    for turn in turns:
        voice = vtt_text(_name(turn.speaker, names))
        for piece in cues(turn):
            text = vtt_text(" ".join(w.text for w in piece))
            end = max(piece[-1].end, piece[0].start + 0.001)
            blocks.append(f"{vtt_time(piece[0].start)} --> {vtt_time(end)}\n<v {voice}>{text}")
    return "\n\n".join(blocks) + "\n"


def has_transcript(result: dict | None) -> bool:
    """The recognised words are stored in the result (`wordLevelTranscription`, an empty list included)."""
    return bool(result) and result.get("wordLevelTranscription") is not None


def stored_turns(result: dict) -> list[TranscriptTurn]:
    """The transcript's turns from the words stored in the result (speakers as diarization labels)."""
    words = [SpokenWord(float(w["start"]), float(w["end"]), str(w.get("text", "")), w.get("speaker"))
             for w in result.get("wordLevelTranscription") or []]
    return group_turns(words)
