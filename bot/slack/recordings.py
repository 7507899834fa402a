"""Recordings shared in channels: the file_share event. Each file's row is stored by a listener middleware,
which bolt runs before it acknowledges the event, so a restart right after the ack loses no file; the
progress reply and the job are the job runner's (`bot.services.recordings`). The "Identify speakers" message
shortcut does the same for a recording already in the channel, answering the presser privately."""
from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.context import Services
from bot.services.recordings import identify_shared, store_shared_files
from bot.slack.feedback import answer_privately
from bot.slack_api.web_api import SlackWebApi
from bot.summary.blocks import IDENTIFY_SPEAKERS
from storage.database import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)


def register(app: AsyncApp, services: Services) -> None:
    async def store_files(body: dict, event: dict, context: AsyncBoltContext, next) -> BoltResponse | None:
        """Before the ack. With the database unreachable Slack gets an error instead, and sends the event again."""
        try:
            await store_shared_files(services, event, context.team_id or body.get("team_id"), context.bot_user_id)
        except UNAVAILABLE_ERRORS as exc:
            log.warning("a shared file could not be stored (%s); Slack will send the event again", type(exc).__name__)
            return BoltResponse(status=503, body="")
        await next()
        return None

    @app.event({"type": "message", "subtype": "file_share"}, middleware=[store_files])
    async def on_file_share() -> None:
        services.kick()

    @app.event("message")
    async def on_other_message() -> None:
        """Plain messages need no work; answering them keeps Slack from retrying."""

    @app.shortcut(IDENTIFY_SPEAKERS)
    async def on_identify_speakers(ack, body: dict, client: AsyncWebClient, context: AsyncBoltContext) -> None:
        await ack()
        text = await identify_shared(services, SlackWebApi(client), team_id=context.team_id or body["team"]["id"],
                                     channel=body["channel"]["id"], message=body.get("message") or {},
                                     presser=body["user"]["id"], bot_user_id=context.bot_user_id,
                                     bot_id=context.bot_id)
        await answer_privately(client, body, text)
