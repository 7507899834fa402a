"""The /enroll modal and the texts around enrollment (pure: builds Block Kit, no I/O)."""
from __future__ import annotations

from datetime import datetime

from bot.config import EngineKind
from bot.summary.blocks import context, section
from bot.text import escape

MODAL_CALLBACK = "enroll_modal"
CONSENT_BLOCK, CONSENT_ACTION = "consent", "consent"
CLIP_BLOCK, CLIP_ACTION = "clip", "clip"
NAME_BLOCK, NAME_ACTION = "name", "name"
REPLACE_BLOCK, REPLACE_ACTION = "replace", "replace"
DEFAULT_NAME = "default"
NAME_MAX = 24  # characters of a voiceprint's name (storage keeps as many)
CLIP_FILETYPES = ["m4a", "mp3", "wav", "webm", "mp4", "mov", "ogg", "flac", "aac", "opus"]

# Where audio and voiceprints go under each engine: every privacy text is built from this, so what people
# are told follows the configured ENGINE.
WHERE_IT_GOES = {
    EngineKind.local: "Your clip and the recordings are processed on the server that runs Voice ID; neither they "
                      "nor your voiceprint are sent anywhere else.",
    EngineKind.server: "Your clip and the recordings go to this Voice ID's own engine server, which makes the "
                       "voiceprint; your voiceprint goes to it with each recording to identify. The engine server "
                       "keeps them only while the job runs.",
    EngineKind.pyannoteai: "Your clip and the recordings go to pyannoteAI, a third-party service, which makes the "
                           "voiceprint; your voiceprint goes to pyannoteAI with each recording to identify. "
                           "pyannoteAI handles them under its own terms and retention.",
}
# Slack shows at most 75 characters in a checkbox's text and in its description.
CONSENT_TEXT = "I agree that Voice ID keeps a voiceprint of my voice"
CONSENT_USE = {
    EngineKind.local: "to name me in recordings shared to my channels.",
    EngineKind.server: "to name me in recordings shared to my channels.",
    EngineKind.pyannoteai: "to name me in my channels, through pyannoteAI (a third party).",
}
SLACK_KEEPS_UPLOAD = ("Slack keeps the file you upload here in your Slack files until you delete it "
                      "(open the file, then More actions → Delete file).")


def consent_statement(engine: EngineKind) -> str:
    """The consent as the modal shows it (the box and its description): stored with the voiceprint."""
    return f"{CONSENT_TEXT} {CONSENT_USE[engine]}"


def retention_text(result_days: int, audit_days: int) -> str:
    """How long each kind of data is kept, as `python -m bot people export` and `/enroll help` say it."""
    return (f"each voiceprint until you delete it or the app is removed; meeting results (who spoke when, "
            f"transcripts, claims) {result_days} days after a recording is first processed; the audit log (who "
            f"enrolled, deleted or corrected what, and when) {audit_days} days. Expired data is purged every hour.")


def help_text(engine: EngineKind, *, result_days: int, audit_days: int, max_voiceprints: int = 3) -> str:
    return f"""\
*Voice ID* names people in meeting recordings shared to channels, from a short sample of their voice.
• `/enroll` — record or pick a clip of your own voice (at most 30 s, only you speaking), name it and agree to its \
use. Up to {max_voiceprints} voiceprints, one per microphone you use (a headset, a laptop, a phone): a clip under a \
name you already use replaces that voiceprint.
• `/enroll status` — your voiceprints: their names, when they were made, with which engine.
• `/enroll delete NAME` — delete the voiceprint with that name now (your others stay).
• `/enroll delete` — delete all your voiceprints now and take your name out of the results Voice ID keeps.
• `/enroll delete @person` — the same for someone else (workspace admins and owners only; they are told by DM).
• `/enroll help` — this message.
Share a recording (audio or video) in a channel with the bot and it replies in the thread with who spoke when.
*Privacy:* {WHERE_IT_GOES[engine]} Voice ID deletes its own copy of your clip once the voiceprint is made. \
{SLACK_KEEPS_UPLOAD}
*Kept:* {retention_text(result_days, audit_days)}"""


def explanation(retention_days: int, engine: EngineKind) -> str:
    return (
        "*What is a voiceprint?* A compact numeric description of your voice computed from the clip you give. "
        "Voice ID deletes its own copy of the clip once the voiceprint is made and keeps only the voiceprint.\n"
        f"*Where does my voice go?* {WHERE_IT_GOES[engine]}\n"
        "*How is it used?* Only to name you in recordings shared to channels you are a member of.\n"
        "*How long is it kept?* Until you delete it or the app is removed from the workspace. "
        f"Meeting results are kept {retention_days} days.\n"
        "*How do I delete it?* Type `/enroll delete` at any time (followed by its name for one voiceprint).")


def name_block(existing: dict[str, datetime], max_voiceprints: int) -> dict:
    """The voiceprint's name: "default" while the person has none, else to be typed (a free one adds a voiceprint,
    one of theirs replaces it)."""
    element = {"type": "plain_text_input", "action_id": NAME_ACTION, "min_length": 1, "max_length": NAME_MAX,
               "placeholder": {"type": "plain_text", "text": "headset, laptop, phone…"}}
    if not existing:
        element["initial_value"] = DEFAULT_NAME
    return {"type": "input", "block_id": NAME_BLOCK, "element": element,
            "label": {"type": "plain_text", "text": "Name of this voiceprint"},
            "hint": {"type": "plain_text", "text": f"Which microphone this clip comes from. You can keep up to "
                                                   f"{max_voiceprints} voiceprints, one per microphone."}}


def existing_text(existing: dict[str, datetime], max_voiceprints: int) -> str:
    """The person's voiceprints for this engine (names are their own text: escaped)."""
    listed = ", ".join(f"“{escape(name)}” ({made:%Y-%m-%d})" for name, made in existing.items())
    if len(existing) >= max_voiceprints:
        return (f"*Your voiceprints:* {listed}. That is the most Voice ID keeps: give one of these names to replace "
                "it (or remove one first with `/enroll delete` followed by its name).")
    return (f"*Your voiceprints:* {listed}. A new name adds one ({max_voiceprints - len(existing)} more possible); "
            "a name you already use replaces that voiceprint.")


def enroll_modal(*, retention_days: int, engine: EngineKind, existing: dict[str, datetime],
                 channel_id: str | None = None, max_voiceprints: int = 3) -> dict:
    """`existing`: the person's voiceprints for the active engine, name → when made."""
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": explanation(retention_days, engine)}},
        {"type": "input", "block_id": CLIP_BLOCK,
         "label": {"type": "plain_text", "text": "A clip of your voice"},
         "hint": {"type": "plain_text", "text": "Audio or video, at most 30 seconds, only your voice. "
                                                + SLACK_KEEPS_UPLOAD},
         "element": {"type": "file_input", "action_id": CLIP_ACTION, "filetypes": CLIP_FILETYPES,
                     "max_files": 1}},
        name_block(existing, max_voiceprints),
        {"type": "input", "block_id": CONSENT_BLOCK,
         "label": {"type": "plain_text", "text": "Consent"},
         "element": {"type": "checkboxes", "action_id": CONSENT_ACTION, "options": [{
             "text": {"type": "mrkdwn", "text": CONSENT_TEXT},
             "description": {"type": "plain_text", "text": CONSENT_USE[engine]},
             "value": "yes"}]}},
    ]
    if existing:
        blocks[2:2] = [context(existing_text(existing, max_voiceprints))]
        blocks.append({
            "type": "input", "block_id": REPLACE_BLOCK, "optional": True,
            "label": {"type": "plain_text", "text": "Replace a voiceprint"},
            "element": {"type": "checkboxes", "action_id": REPLACE_ACTION, "options": [{
                "text": {"type": "mrkdwn",
                         "text": "If I give the name of a voiceprint I have, replace it with this clip."},
                "value": "yes"}]}})
    return {
        "type": "modal", "callback_id": MODAL_CALLBACK, "private_metadata": channel_id or "",
        "title": {"type": "plain_text", "text": "Enroll your voice"},
        "submit": {"type": "plain_text", "text": "Enroll"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def message_view(title: str, text: str) -> dict:
    return {"type": "modal", "title": {"type": "plain_text", "text": title[:24]},
            "close": {"type": "plain_text", "text": "Close"},
            "blocks": [section(text)]}


def checked(values: dict, block: str, action: str) -> bool:
    return bool(((values.get(block) or {}).get(action) or {}).get("selected_options"))


def submitted_name(values: dict) -> str:
    """What the person typed as the voiceprint's name ("default" when the modal had no name field)."""
    field = (values.get(NAME_BLOCK) or {}).get(NAME_ACTION)
    return DEFAULT_NAME if field is None else field.get("value") or ""


def submitted_files(values: dict) -> list[dict]:
    return ((values.get(CLIP_BLOCK) or {}).get(CLIP_ACTION) or {}).get("files") or []
