"""Recordings shared in channels: one job per file (however often Slack retries), a reply in the thread at once."""
from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.context import Services
from bot.slack_api.files import is_media
from bot.slack_api.replies import keep_stored, show_reply
from bot.summary.status import render_progress

log = logging.getLogger(__name__)


def media_files(event: dict, bot_user_id: str | None) -> list[dict]:
    """The audio/video files of a file_share message, or none when the bot itself shared them."""
    if event.get("bot_id") or (bot_user_id and event.get("user") == bot_user_id):
        return []
    return [f for f in event.get("files") or [] if is_media(f) or f.get("mode") == "file_access"]


async def accept_recordings(services: Services, event: dict, team_id: str, client: AsyncWebClient,
                            bot_user_id: str | None) -> int:
    """Queue each new recording and reply in its thread; returns how many jobs were created."""
    from storage.recordings import enqueue_recording, set_reply_ts

    created_count = 0
    for f in media_files(event, bot_user_id):
        if f.get("mode") == "file_access":  # Slack Connect stub: the real object needs files.info
            f = (await client.files_info(file=f["id"]))["file"]
            if not is_media(f):
                continue
        rec, created = await enqueue_recording(
            services.db, team_id=team_id, channel_id=event["channel"], file_id=f["id"],
            file_name=f.get("name") or f["id"], mimetype=f.get("mimetype"), size=f.get("size"),
            uploader_id=event.get("user"), message_ts=event["ts"], thread_ts=event.get("thread_ts"),
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


def register(app: AsyncApp, services: Services) -> None:
    @app.event({"type": "message", "subtype": "file_share"})
    async def on_file_share(event: dict, body: dict, context: AsyncBoltContext, client: AsyncWebClient) -> None:
        team_id = context.team_id or body.get("team_id")
        await accept_recordings(services, event, team_id, client, context.bot_user_id)

    @app.event("message")
    async def on_other_message() -> None:
        """Plain messages need no work; answering them keeps Slack from retrying."""
