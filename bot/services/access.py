"""Who may use the buttons on a summary, and how often "Identify again".

Every button ("This is me", "Not me", "Undo", "Identify again") acts only for members of the recording's
channel, as Slack lists them at the press (`conversations.members`): a public channel can be read, and its
buttons pressed, by people who never joined it. "Identify again" is also rationed (see
`storage.recordings.requeue_identify`); the presser is told how long to wait.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime

from bot.config import Settings
from bot.errors import SlackCallError
from bot.services.context import SlackPort
from storage.models import Recording

log = logging.getLogger(__name__)

NOT_A_MEMBER = ("Only members of this channel (<#{channel}>) can use the buttons on its summaries, so nothing was "
                "changed.")
CANNOT_CHECK = ("Voice ID cannot see who is in this recording's channel (it may have been removed from it), so "
                "nothing was changed.")
CANNOT_SEE = {"channel_not_found", "not_in_channel"}


class Outsider(Exception):
    """The presser is not (or cannot be shown to be) a member of the recording's channel; `reason` is for them."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


async def require_member(slack: SlackPort, rec: Recording, user: str) -> list[str]:
    """The members of the recording's channel; raises Outsider when `user` is not one of them, or when Slack
    will not list them (the check fails closed)."""
    try:
        members = await slack.channel_members(rec.channel_id)
    except SlackCallError as exc:
        if exc.error not in CANNOT_SEE:
            raise
        log.warning("recording %s: cannot list the members of its channel (%s)", rec.id, exc.error)
        raise Outsider(CANNOT_CHECK) from exc
    if user not in members:
        raise Outsider(NOT_A_MEMBER.format(channel=rec.channel_id))
    return members


def wait_text(retry_at: datetime, now: datetime) -> str:
    """"in 5 minutes", rounded up, so pressing at the time said works."""
    minutes = math.ceil((retry_at - now).total_seconds() / 60)
    if minutes <= 1:
        return "in a minute"
    if minutes <= 90:
        return f"in {minutes} minutes"
    return f"in about {round(minutes / 60)} hours"


def too_soon(settings: Settings, retry_at: datetime, *, per_person: bool, now: datetime) -> str:
    """The answer to a press inside a cooldown: whose cooldown, its rule and how long is left."""
    if per_person:
        rule = f"each person can start it once every {_minutes(settings.identify_again_person_cooldown_minutes)}"
        return f"You started *Identify again* recently; {rule}. Please press it again {wait_text(retry_at, now)}."
    rule = (f"a recording can run again {_minutes(settings.identify_again_recording_cooldown_minutes)} after its "
            "last re-run ended")
    return (f"This recording was identified again recently; {rule}. Please press it again "
            f"{wait_text(retry_at, now)}.")


def _minutes(value: float) -> str:
    return f"{value:g} minute{'' if value == 1 else 's'}"
