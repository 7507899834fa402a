"""Recordings: accepted from a file share (one job per file, a progress reply in its thread at once), the
voiceprints a recording is identified against, and "Identify again"."""
from __future__ import annotations

import logging
from datetime import timedelta

from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import MediaError
from bot.schema import VoiceprintInput, utcnow
from bot.services.access import Outsider, require_member, too_soon
from bot.services.context import Services
from bot.services.voiceprints import channel_voiceprints
from bot.slack_api.files import is_media
from bot.slack_api.lookups import file_info
from bot.slack_api.replies import keep_stored, show_reply
from bot.summary.status import render_progress
from bot.text import escape

log = logging.getLogger(__name__)

def media_files(event: dict, bot_user_id: str | None) -> list[dict]:
    """The audio/video files of a file_share message, or none when the bot itself shared them."""
    if event.get("bot_id") or (bot_user_id and event.get("user") == bot_user_id):
        return []
    return [f for f in event.get("files") or [] if is_media(f) or f.get("mode") == "file_access"]


async def accept_recordings(services: Services, event: dict, team_id: str, client: AsyncWebClient,
                            bot_user_id: str | None) -> int:
    """Queue each new recording and reply in its thread; returns how many jobs were created."""
    from storage.recordings import enqueue_recording
    from storage.thread import set_reply_ts

    created_count = 0
    for f in media_files(event, bot_user_id):
        if f.get("mode") == "file_access":  # Slack Connect stub: the real object needs files.info
            f = (await client.files_info(file=f["id"]))["file"]
            if not is_media(f):
                continue
        rec, created = await enqueue_recording(
            services.db, team_id=team_id, channel_id=event["channel"], file_id=f["id"],
            file_name=f.get("name") or f["id"], uploader_id=event.get("user"), message_ts=event["ts"], thread_ts=event.get("thread_ts"),
            engine=services.engine.engine_id)
        if not created:
            continue
        created_count += 1
        progress = render_progress(rec.file_name)
        ts = await show_reply(client, recording_id=rec.id, channel=event["channel"],
                              thread_ts=event.get("thread_ts") or event["ts"], msg=progress, look_first=False)
        await keep_stored(client, event["channel"], ts, await set_reply_ts(services.db, rec.id, ts), None)
        services.kick()
    return created_count


async def enrolled_among(services: Services, team_id: str, members: list[str]) -> list[VoiceprintInput]:
    """The voiceprints of these people made with the active engine, under their labels (`services.voiceprints`)."""
    return await channel_voiceprints(services, team_id, members)


NOBODY_ENROLLED = ("Nobody in this channel has enrolled their voice yet, so identifying again could still name "
                   "nobody. Type `/enroll` with a short clip of your own voice first, then press *Identify again*.")
QUEUED = ("Identifying the speakers again against the voiceprints of this channel's members; the summary will be "
          "updated in place.")


def file_gone(file_name: str) -> str:
    return (f"{escape(file_name)} is no longer in Slack, and Voice ID keeps no copy of recordings, so it cannot be "
            "identified again. Share the recording again to have it identified.")


async def identify_again(services: Services, client: AsyncWebClient, *, rec_id: int, clicker: str,
                         team_id: str | None) -> str:
    """Checks and queues the re-run of a recording's identification; returns the private answer for the presser.
    Who may: a member of the recording's channel (checked with Slack), in the recording's workspace, outside the
    recording's and their own cooldown; it needs the result still retained, someone in the channel enrolled, and
    the file still in Slack (the audio is never kept after processing, so the job downloads it again). The re-run
    is the recording's own durable job, queued behind the recordings already waiting."""
    from storage.recordings import PURGED, IdentifyRefused, IdentifyTooSoon, get_recording, requeue_identify

    rec = await get_recording(services.db, rec_id)
    if rec is None or (team_id and rec.team_id != team_id):
        return PURGED
    try:
        members = await require_member(client, rec, clicker)
    except Outsider as exc:
        return exc.reason
    if rec.result is None:
        return PURGED
    if not await enrolled_among(services, rec.team_id, members):
        return NOBODY_ENROLLED
    try:
        await file_info(client, rec.file_id)
    except MediaError:
        return file_gone(rec.file_name)
    s = services.settings
    try:
        await requeue_identify(services.db, rec.id, actor_id=clicker,
                               recording_cooldown=timedelta(minutes=s.identify_again_recording_cooldown_minutes),
                               person_cooldown=timedelta(minutes=s.identify_again_person_cooldown_minutes))
    except IdentifyTooSoon as exc:
        return too_soon(s, exc.retry_at, per_person=exc.per_person, now=utcnow())
    except IdentifyRefused as exc:
        return exc.reason
    log.info("recording %s: identify again requested by %s", rec.id, clicker)
    services.kick()
    return QUEUED
