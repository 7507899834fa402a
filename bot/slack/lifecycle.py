"""`app_uninstalled` / `tokens_revoked`: forget the workspace's tokens, voiceprints and results."""
from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext

from bot.services.context import Services
from bot.services.workspaces import forget_workspace

log = logging.getLogger(__name__)


def register(app: AsyncApp, services: Services) -> None:
    @app.event("app_uninstalled")
    async def on_uninstalled(context: AsyncBoltContext, body: dict) -> None:
        team_id = context.team_id or body.get("team_id")
        await forget_workspace(services, team_id, context.enterprise_id)
        log.info("app uninstalled from %s: tokens, voiceprints and results removed", team_id)

    @app.event("tokens_revoked")
    async def on_tokens_revoked(event: dict, context: AsyncBoltContext, body: dict) -> None:
        if not (event.get("tokens") or {}).get("bot"):
            return  # only user tokens: the bot keeps working
        team_id = context.team_id or body.get("team_id")
        await forget_workspace(services, team_id, context.enterprise_id)
        log.info("bot token revoked in %s: tokens, voiceprints and results removed", team_id)
