"""Recordings shared in channels: the file_share event, handed to `bot.services.recordings`."""
from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.context import Services
from bot.services.recordings import accept_recordings


def register(app: AsyncApp, services: Services) -> None:
    @app.event({"type": "message", "subtype": "file_share"})
    async def on_file_share(event: dict, body: dict, context: AsyncBoltContext, client: AsyncWebClient) -> None:
        team_id = context.team_id or body.get("team_id")
        await accept_recordings(services, event, team_id, client, context.bot_user_id)

    @app.event("message")
    async def on_other_message() -> None:
        """Plain messages need no work; answering them keeps Slack from retrying."""
