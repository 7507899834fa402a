"""The /enroll modal and the texts around enrollment (pure: builds Block Kit, no I/O)."""
from __future__ import annotations

from datetime import datetime

from bot.config import EngineKind
from bot.summary.blocks import section

MODAL_CALLBACK = "enroll_modal"
CONSENT_BLOCK, CONSENT_ACTION = "consent", "consent"
CLIP_BLOCK, CLIP_ACTION = "clip", "clip"
REPLACE_BLOCK, REPLACE_ACTION = "replace", "replace"
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
    return (f"your voiceprint until you delete it or the app is removed; meeting results (who spoke when, "
            f"transcripts, claims) {result_days} days after a recording is first processed; the audit log (who "
            f"enrolled, deleted or corrected what, and when) {audit_days} days. Expired data is purged every hour.")


def help_text(engine: EngineKind, *, result_days: int, audit_days: int) -> str:
    return f"""\
*Voice ID* names people in meeting recordings shared to channels, from a short sample of their voice.
• `/enroll` — record or pick a clip of your own voice (at most 30 s, only you speaking) and agree to its use.
• `/enroll status` — whether you are enrolled, since when, and with which engine.
• `/enroll delete` — delete your voiceprint now and take your name out of the results Voice ID keeps.
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
        "*How do I delete it?* Type `/enroll delete` at any time.")


def enroll_modal(*, retention_days: int, engine: EngineKind, existing: datetime | None,
                 channel_id: str | None = None) -> dict:
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": explanation(retention_days, engine)}},
        {"type": "input", "block_id": CLIP_BLOCK,
         "label": {"type": "plain_text", "text": "A clip of your voice"},
         "hint": {"type": "plain_text", "text": "Audio or video, at most 30 seconds, only your voice. "
                                                + SLACK_KEEPS_UPLOAD},
         "element": {"type": "file_input", "action_id": CLIP_ACTION, "filetypes": CLIP_FILETYPES,
                     "max_files": 1}},
        {"type": "input", "block_id": CONSENT_BLOCK,
         "label": {"type": "plain_text", "text": "Consent"},
         "element": {"type": "checkboxes", "action_id": CONSENT_ACTION, "options": [{
             "text": {"type": "mrkdwn", "text": CONSENT_TEXT},
             "description": {"type": "plain_text", "text": CONSENT_USE[engine]},
             "value": "yes"}]}},
    ]
    if existing is not None:
        blocks.append({
            "type": "input", "block_id": REPLACE_BLOCK,
            "label": {"type": "plain_text", "text": "Replace your voiceprint"},
            "element": {"type": "checkboxes", "action_id": REPLACE_ACTION, "options": [{
                "text": {"type": "mrkdwn",
                         "text": f"Replace the voiceprint I enrolled on {existing:%Y-%m-%d} with this clip."},
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


def submitted_files(values: dict) -> list[dict]:
    return ((values.get(CLIP_BLOCK) or {}).get(CLIP_ACTION) or {}).get("files") or []
