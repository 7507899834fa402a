"""A person's own App Home: their enrollment (each voiceprint, when, the consent they gave), the recordings
whose stored result names them (with "Not me"), a delete button behind a confirmation, and what Voice ID keeps
and for how long (pure: builds the Block Kit view, no I/O).

Limits (docs.slack.dev, Home tab views): at most 100 blocks; the view is cut to fit, saying so.
"""
from __future__ import annotations

from bot.summary.blocks import button_value, context, mrkdwn, section
from bot.summary.stats import clock
from bot.text import channel_mention, escape

MAX_HOME_BLOCKS = 100
HOME_NOT_ME = "home_not_me"
HOME_DELETE = "home_delete"

DELETE_CONFIRM = ("Your voiceprints are deleted at once, and your name is taken out of every meeting result Voice "
                  "ID keeps and of the summaries already posted. Only you can enroll again, with /enroll.")
NOT_ENROLLED = ("You are not enrolled, so Voice ID names you in no new recording. Type `/enroll` in any channel "
                "to add your voice.")


def _day(iso: str | None) -> str:
    """`2025-03-14` from a stored ISO time."""
    return iso[:10] if iso else "an unknown date"


def voiceprint_blocks(vp: dict, active_engine: str) -> list[dict]:
    """One voiceprint: its name when it has one, engine, model, dates, and the consent text as stored."""
    name = f" “{escape(vp['name'])}”" if vp.get("name") else ""
    line = (f"*Voiceprint{name}* · {escape(vp['engine'])} engine, model {escape(vp['model'])}\n"
            f"Enrolled {_day(vp['enrolled_at'])} · last replaced {_day(vp['last_replaced_at'])} · from a "
            f"{vp['clip_length_seconds']:.0f} s clip")
    if vp["engine"] != active_engine:
        line += (f"\n_Not used now: Voice ID uses the {escape(active_engine)} engine; type `/enroll` to be "
                 "recognised again._")
    consent = f"Consent you gave on {_day(vp['consent_given_at'])}: “{escape(vp['consent_text'])}”"
    return [section(line), context(consent)]


def recording_rows(entry: dict) -> list[dict]:
    """One block per way a recording names the person: a voiceprint match (with "Not me", or that they said
    it), or their own claim."""
    where = (f"{channel_mention(entry['channel_id'])} · shared {_day(entry['shared_at'])} · kept until "
             f"{_day(entry['result_deleted_after'])}")
    rows = []
    for match in entry["identified_by_voiceprint"]:
        confidence = f" · {match['confidence']:.0f}% match" if match.get("confidence") is not None else ""
        talk = f" · {clock(match['talk_time_seconds'])} talk time" if match.get("talk_time_seconds") else ""
        block = section(f"{where}\nNamed you by your voiceprint{confidence}{talk}"
                        + (" · you said *Not me*" if match["they_said_not_me"] else ""))
        if not match["they_said_not_me"]:
            block["accessory"] = {"type": "button", "action_id": HOME_NOT_ME,
                                  "text": {"type": "plain_text", "text": "Not me"},
                                  "value": button_value(entry["recording_id"], match["speaker"])}
        rows.append(block)
    for claim in entry["claimed_with_this_is_me"]:
        talk = f", {clock(claim['talk_time_seconds'])} talk time" if claim.get("talk_time_seconds") else ""
        rows.append(section(f"{where}\nYou claimed a speaker with *This is me*{talk} (undo it on the summary)"))
    return rows


def delete_block() -> dict:
    return {"type": "actions", "block_id": "home_delete", "elements": [{
        "type": "button", "action_id": HOME_DELETE, "style": "danger", "value": "me",
        "text": {"type": "plain_text", "text": "Delete my voiceprints and my name in results"},
        "confirm": {"title": {"type": "plain_text", "text": "Delete your Voice ID data?"},
                    "text": {"type": "plain_text", "text": DELETE_CONFIRM},
                    "confirm": {"type": "plain_text", "text": "Delete"},
                    "deny": {"type": "plain_text", "text": "Cancel"}, "style": "danger"}}]}


def home_view(log, *, active_engine: str, notice_text: str, kept: str, answer: str | None = None) -> dict:
    """The Home view of one person from their `bot.services.people.PersonLog`; `active_engine` is the name of
    the engine in use, `notice_text` what Voice ID does with a voiceprint (the enrollment modal's words),
    `kept` the retention schedule (`/enroll help`'s words), `answer` the outcome of their last button (mrkdwn
    written by Voice ID, with any untrusted part escaped)."""
    top: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": "Your voice in Voice ID"}}]
    if answer:
        top.append(section(answer))
    top.append(section("*Your enrollment*"))
    for vp in log.voiceprints:
        top += voiceprint_blocks(vp, active_engine)
    if not log.voiceprints:
        top.append(section(NOT_ENROLLED))
    top += [context(f"An enrollment you submitted on {_day(job['submitted_at'])} is still being processed.")
            for job in log.enrolling]
    if log.voiceprints or log.enrolling or log.named_in:
        top.append(delete_block())
    shown = len(log.recordings)
    top += [{"type": "divider"}, section(
        "*Recordings that name you*\n" + (
            "No meeting result Voice ID keeps names you." if not log.named_in else
            f"{log.named_in} meeting result{'' if log.named_in == 1 else 's'} Voice ID keeps name you"
            + (f"; the latest {shown} are listed." if shown < log.named_in else ".")))]
    bottom = [{"type": "divider"}, section(f"*Kept:* {kept}"), {"type": "section", "text": mrkdwn(notice_text)},
              context("Only you see this page. `/enroll help` lists the commands.")]
    rows = [row for entry in log.recordings for row in recording_rows(entry)]
    room = MAX_HOME_BLOCKS - len(top) - len(bottom)
    if len(rows) > room:
        rows = rows[:room - 1] + [context("More are not shown here: Slack fits 100 blocks on a page.")]
    return {"type": "home", "blocks": top + rows + bottom}
