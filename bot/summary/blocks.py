"""The attributed summary as Block Kit, within Slack's limits, always with fallback text.

Limits (docs.slack.dev): 50 blocks per message, 3000 characters per section text, 150 per header,
about 13k characters in all before `msg_blocks_too_long`.
"""
from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from bot.schema import Provenance
from bot.summary.stats import SpeakerStats, Summary, clock, overview
from bot.text import escape, mention

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_TEXT = 3000
# Speakers beyond this many are listed compactly, without buttons, to stay under the block limit.
MAX_SPEAKER_BLOCKS = 30
# Meetings at least this long get a who-spoke-when overview in slices.
OVERVIEW_MIN_SECONDS = 15 * 60

THIS_IS_ME = "this_is_me"
NOT_ME = "not_me"
UNDO_CLAIM = "undo_claim"
IDENTIFY_AGAIN = "identify_again"
IDENTIFY_SPEAKERS = "identify_speakers"  # the message shortcut (manifest.yml), on a recording already in a channel

# The one line a diarize-only summary adds: how to be named next time, and how to name people here.
ENROLL_INVITE = ("Nobody in this channel had enrolled their voice when this recording was processed, so its "
                 "speakers are numbered. Type `/enroll` with a short clip of your own voice to be named in future "
                 "recordings; once you have, *Identify again* names the enrolled people here too.")


@dataclass(frozen=True)
class SlackMessage:
    text: str
    blocks: list[dict]


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mrkdwn(text: str, limit: int = MAX_SECTION) -> dict:
    """A mrkdwn text object that Slack shows `verbatim`: it turns no bare URL, channel name or mention into a
    link (docs.slack.dev, text object); the markup we write ourselves (`<@U…>`, `<url|label>`, `*bold*`)
    still works. Untrusted parts must be `escape`d all the same."""
    return {"type": "mrkdwn", "text": clip(text, limit), "verbatim": True}


def section(text: str) -> dict:
    return {"type": "section", "text": mrkdwn(text)}


def chunks(lines: list[str], limit: int = MAX_SECTION) -> list[str]:
    """Join lines into texts of at most `limit` characters, never splitting a line unless it alone is longer."""
    out: list[str] = []
    current = ""
    for line in lines:
        line = clip(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            out.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return out


def speaker_name(s: SpeakerStats, *, as_mention: bool = True, numbered: bool = False) -> str:
    """A voiceprint-matched person, else "Unknown speaker N" ("Speaker N" when `numbered`: a diarize-only
    result, where nobody could have been recognised)."""
    if s.user_id:
        return mention(s.user_id) if as_mention else s.user_id
    return f"{'Speaker' if numbered else 'Unknown speaker'} {s.unknown_index}"


def speaker_line(s: SpeakerStats, *, numbered: bool = False) -> str:
    """Named only by a voiceprint match (with its confidence); a claim is shown as a claim, never as a name."""
    name = speaker_name(s, numbered=numbered)
    if s.user_id and s.confidence is not None:
        name += f" · {s.confidence:.0f}% match"
    elif s.claimed_by:
        name += f" — claimed by {mention(s.claimed_by)}"
    turns = "1 turn" if s.turns == 1 else f"{s.turns} turns"
    return (f"*{name}*\n{clock(s.talk_time)} talk time · {s.share:.0%} of speech · {turns} · "
            f"longest {clock(s.longest_turn)}")


def button_value(recording_id: int, speaker: str) -> str:
    return f"{recording_id}:{speaker}"


def parse_button_value(value: str) -> tuple[int, str]:
    """Inverse of `button_value`; raises ValueError on anything else."""
    rec, _, speaker = value.partition(":")
    if not speaker:
        raise ValueError(f"not a speaker button value: {value!r}")
    return int(rec), speaker


def speaker_block(s: SpeakerStats, recording_id: int, *, numbered: bool = False) -> dict:
    action, label = ((NOT_ME, "Not me") if s.user_id else (UNDO_CLAIM, "Undo claim") if s.claimed_by
                     else (THIS_IS_ME, "This is me"))
    return {
        "type": "section",
        "block_id": f"speaker:{s.speaker}"[:255],
        "text": mrkdwn(speaker_line(s, numbered=numbered)),
        "accessory": {"type": "button", "action_id": action, "text": {"type": "plain_text", "text": label},
                      "value": button_value(recording_id, s.speaker)},
    }


def overview_lines(summary: Summary) -> list[str]:
    """One line per slice of a long meeting: `0:00–5:00  @a 62%, Unknown speaker 1 30%`."""
    window = 5 * 60 if summary.duration <= 90 * 60 else 15 * 60
    names = {s.speaker: speaker_name(s, numbered=summary.diarize_only) for s in summary.speakers}
    lines = []
    for start, end, spoken in overview(summary, window):
        span = end - start or 1.0
        who = ", ".join(f"{names.get(sp, sp)} {sec / span:.0%}" for sp, sec in spoken[:3]) or "_silence_"
        lines.append(f"`{clock(start)}–{clock(end)}`  {who}")
    return lines


def fallback_text(summary: Summary, file_name: str) -> str:
    parts = [f"{speaker_name(s, numbered=summary.diarize_only)} {s.share:.0%}" for s in summary.speakers]
    head = f"Speakers in {escape(file_name)} ({clock(summary.duration)})"
    return clip(f"{head}: {', '.join(parts)}" if parts else f"{head}: no speech found", MAX_TEXT)


def offers_identify_again(summary: Summary) -> bool:
    """"Identify again" is offered while some speaker is not named by a voiceprint (someone may have
    enrolled since): always on a diarize-only summary with speech, never when everyone is named."""
    return any(s.user_id is None for s in summary.speakers)


def identify_again_block(recording_id: int) -> dict:
    return {"type": "actions", "block_id": "identify_again", "elements": [
        {"type": "button", "action_id": IDENTIFY_AGAIN, "text": {"type": "plain_text", "text": "Identify again"},
         "value": str(recording_id)}]}


def parse_recording_value(value: str) -> int:
    """Inverse of the "Identify again" button's value; raises ValueError on anything else."""
    if not value.isdigit():
        raise ValueError(f"not a recording button value: {value!r}")
    return int(value)


def context(text: str) -> dict:
    return {"type": "context", "elements": [mrkdwn(text)]}


def provenance_line(provenance: dict | None) -> str | None:
    """Which engine named whom (`bot.schema.Provenance`): the engine, its pipeline and models, the threshold.
    None for a result stored without one (before Voice ID kept it): nothing is guessed. Every part is escaped:
    an engine server reports its own."""
    if not isinstance(provenance, dict):
        return None
    try:
        p = Provenance.model_validate(provenance)
    except ValidationError:
        return None
    parts = [f"Engine: {escape(p.name or p.engine or 'unknown')}"]
    if p.pipeline:
        parts.append(f"diarization pipeline {escape(p.pipeline)}" + (f" ({escape(p.models)})" if p.models else ""))
    elif p.models:
        parts.append(f"model {escape(p.models)}")
    parts.append(f"match threshold {p.threshold:g}" if p.threshold is not None else "no voiceprints compared")
    return " · ".join(parts)


HINT_FROM = {"message": "from the message", "identify_again": "set with Identify again"}


def hint_line(hint: dict | None) -> str | None:
    """The speaker count the engine was given, and where it came from ("Speaker count from the message: 3");
    None without one (or a malformed one: nothing is guessed)."""
    if not isinstance(hint, dict) or hint.get("from") not in HINT_FROM:
        return None
    low, high = hint.get("low"), hint.get("high")
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        return None
    return f"Speaker count {HINT_FROM[hint['from']]}: {low if low == high else f'{low}–{high}'}"


def render_summary(summary: Summary, *, file_name: str, recording_id: int,
                   transcript: str | None = None, note: str | None = None,
                   provenance: dict | None = None, hint: dict | None = None) -> SlackMessage:
    """The summary message: header, one section (with a button) per speaker, overview, the /enroll
    invitation (diarize-only), the `transcript` line (mrkdwn, see `bot.summary.status.transcript_line`)
    and a `note` (mrkdwn, e.g. why "Identify again" failed) when given, "Identify again" while some speaker
    is unnamed, the speaker count the engine was given (`hint_line`), the `provenance` line (which engine,
    models and threshold; see `provenance_line`), footer.

    The file name goes raw into the plain_text header (Slack shows it as is, emoji codes too, as text) and
    escaped into the fallback text.
    """
    numbered = summary.diarize_only
    identified = sum(1 for s in summary.speakers if s.user_id)
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(f"Who spoke in {file_name}", MAX_HEADER),
                                    "emoji": False}},
        context(f"{clock(summary.duration)} · {len(summary.speakers)} speakers · "
                + ("nobody enrolled yet" if numbered else f"{identified} identified")),
    ]
    if not summary.speakers:
        blocks.append(section("No speech was found in this recording."))
    with_buttons = summary.speakers[:MAX_SPEAKER_BLOCKS]
    blocks += [speaker_block(s, recording_id, numbered=numbered) for s in with_buttons]
    rest = summary.speakers[MAX_SPEAKER_BLOCKS:]
    footer = context(
        "*This is me* shows your claim to everyone, as a claim; it never names you in other recordings."
        if numbered else
        "Named only from voiceprints of this channel's members who enrolled with `/enroll`. "
        "Wrong? Press *Not me*. *This is me* shows your claim to everyone; it never names you in other "
        "recordings.")
    extra: list[str] = []
    if rest:
        extra += chunks([speaker_line(s, numbered=numbered).replace("\n", " — ") for s in rest])
    if summary.duration >= OVERVIEW_MIN_SECONDS and summary.segments:
        extra += chunks(["*Who spoke when*"] + overview_lines(summary))
    tail = [context(line) for line in (ENROLL_INVITE if numbered and summary.speakers else None, transcript, note)
            if line]
    if offers_identify_again(summary):
        tail.append(identify_again_block(recording_id))
    if (count := hint_line(hint)) is not None:
        tail.append(context(count))
    if (made_by := provenance_line(provenance)) is not None:
        tail.append(context(made_by))
    tail.append(footer)
    room = MAX_BLOCKS - len(blocks) - len(tail)
    blocks += [section(t) for t in extra[:room]]
    blocks += tail
    return SlackMessage(text=fallback_text(summary, file_name), blocks=blocks)


# -- "Identify again" asks for the number of speakers -------------------------------------------------------

SPEAKERS_BLOCK = SPEAKERS_ACTION = "speakers"
SPEAKERS_INVALID = "Give a whole number from 1 to 10, or leave it empty."


def identify_again_modal(recording_id: int, channel: str, file_name: str, hint: tuple[int, int, str] | None) -> dict:
    """The modal "Identify again" opens: an optional number of speakers (1–10) for the re-run. `hint` is the
    recording's count now (low, high, where from), which an empty field keeps. The recording and the channel
    to answer in ride in `private_metadata` (set by us; Slack gives it back unchanged)."""
    if hint is None:
        now = "Leave it empty to let Voice ID count the speakers."
    else:
        low, high, source = hint
        said = HINT_FROM.get(source, "from the message")
        now = f"Leave it empty to keep the count {said}: {low if low == high else f'{low}–{high}'}."
    return {
        "type": "modal", "callback_id": IDENTIFY_AGAIN, "private_metadata": f"{recording_id}:{channel}",
        "title": {"type": "plain_text", "text": "Identify again"},
        "submit": {"type": "plain_text", "text": "Identify again"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(f"Identify the speakers of *{escape(file_name)}* again, against the voiceprints of this "
                    "channel's members as they are now. The summary is updated in place."),
            {"type": "input", "block_id": SPEAKERS_BLOCK, "optional": True,
             "label": {"type": "plain_text", "text": "Number of speakers (optional)"},
             "hint": {"type": "plain_text", "text": now},
             "element": {"type": "number_input", "action_id": SPEAKERS_ACTION, "is_decimal_allowed": False,
                         "min_value": "1", "max_value": "10"}},
        ],
    }


def parse_identify_again(view: dict) -> tuple[int, str, int | None]:
    """(recording id, channel, number of speakers or None) from the submitted modal; raises ValueError on a
    number outside 1–10 (or not a whole number) and on metadata that is not ours."""
    rec, _, channel = (view.get("private_metadata") or "").partition(":")
    raw = (((view.get("state") or {}).get("values") or {}).get(SPEAKERS_BLOCK) or {}).get(SPEAKERS_ACTION) or {}
    value = (raw.get("value") or "").strip()
    if not value:
        return parse_recording_value(rec), channel, None
    if not value.isdigit() or not 1 <= int(value) <= 10:
        raise ValueError(SPEAKERS_INVALID)
    return parse_recording_value(rec), channel, int(value)
