""""Identify again" on a summary: run identification of that recording again against the channel's current
voiceprints, and update the same summary.

Who may: a member of the recording's channel (checked with Slack, like the channel's voiceprints are), in the
recording's workspace. It needs the result still retained, someone in the channel enrolled, and the file still
in Slack (the audio is never kept after processing, so the job downloads it again). The re-run itself is the
recording's durable job (`storage.recordings.requeue_identify`): the listener only checks, queues and answers
privately; a worker does the rest under a lease.
"""
from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import MediaError
from bot.failures import new_ref
from bot.jobs.pipeline import MAX_VOICEPRINTS, channel_members, file_info
from bot.services.context import Services
from bot.summary.blocks import IDENTIFY_AGAIN, parse_recording_value
from bot.text import escape

log = logging.getLogger(__name__)

NOT_A_MEMBER = "Only members of this channel can identify this recording again."
NOBODY_ENROLLED = ("Nobody in this channel has enrolled their voice yet, so identifying again could still name "
                   "nobody. Type `/enroll` with a short clip of your own voice first, then press *Identify again*.")
QUEUED = ("Identifying the speakers again against the voiceprints of this channel's members; the summary will be "
          "updated in place.")


def file_gone(file_name: str) -> str:
    return (f"{escape(file_name)} is no longer in Slack, and Voice ID keeps no copy of recordings, so it cannot be "
            "identified again. Share the recording again to have it identified.")


async def identify_again(services: Services, client: AsyncWebClient, body: dict) -> str:
    """Checks and queues the re-run; returns the private answer for the presser."""
    from storage.recordings import PURGED, IdentifyRefused, get_recording, requeue_identify
    from storage.voiceprints import voiceprints_for_users

    clicker = body["user"]["id"]
    try:
        rec_id = parse_recording_value(body["actions"][0]["value"])
    except ValueError:
        return "This button is not one of Voice ID's summaries."
    rec = await get_recording(services.db, rec_id)
    team_id = (body.get("team") or {}).get("id")
    if rec is None or (team_id and rec.team_id != team_id):
        return PURGED
    if rec.result is None:
        return PURGED
    members = await channel_members(client, rec.channel_id)
    if clicker not in members:
        return NOT_A_MEMBER
    if not await voiceprints_for_users(services.db, rec.team_id, members, services.engine.engine_id,
                                       limit=MAX_VOICEPRINTS):
        return NOBODY_ENROLLED
    try:
        await file_info(client, rec.file_id)
    except MediaError:
        return file_gone(rec.file_name)
    try:
        await requeue_identify(services.db, rec.id, actor_id=clicker)
    except IdentifyRefused as exc:
        return exc.reason
    log.info("recording %s: identify again requested by %s", rec.id, clicker)
    services.kick()
    return QUEUED


def register(app: AsyncApp, services: Services) -> None:
    @app.action(IDENTIFY_AGAIN)
    async def on_identify_again(ack, body: dict, client: AsyncWebClient) -> None:
        await ack()
        try:
            text = await identify_again(services, client, body)
        except Exception as exc:  # the log has the details, the presser a ref
            ref = new_ref()
            detail = exc.response.get("error") if isinstance(exc, SlackApiError) else f"{type(exc).__name__}: {exc}"
            log.warning("identify again failed (%s) [ref %s]", detail, ref, exc_info=not isinstance(exc, SlackApiError))
            text = f"Identifying again did not work this time (ref {ref}). Try again later."
        channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id")
        await client.chat_postEphemeral(channel=channel, user=body["user"]["id"], text=text)
