"""Multi-workspace OAuth over our own tables: bolt's installation and state stores (token rotation for jobs:
`bot.slack_api.tokens`)."""
from __future__ import annotations

import logging

from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bot.services.context import Services
from bot.slack_api.tokens import ROTATE_BEFORE_MINUTES, bot_fields, to_bot

log = logging.getLogger(__name__)

# Exactly the scopes the bot uses (keep in step with manifest.yml).
BOT_SCOPES = ["commands", "chat:write", "files:read", "files:write", "channels:history", "groups:history",
              "channels:read", "groups:read", "users:read"]
STATE_TTL_SECONDS = 600


class DatabaseInstallationStore(AsyncInstallationStore):
    """Bot-only installations in the Workspace table (user tokens are never requested)."""

    def __init__(self, services: Services):
        self.services = services

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        from storage.workspaces import save_workspace

        await save_workspace(self.services.db, **bot_fields(installation),
                             installer_user_id=installation.user_id)

    async def async_save_bot(self, bot: Bot) -> None:
        from storage.workspaces import save_workspace

        await save_workspace(self.services.db, **bot_fields(bot))

    async def async_find_bot(self, *, enterprise_id: str | None, team_id: str | None,
                             is_enterprise_install: bool | None = False) -> Bot | None:
        from storage.workspaces import get_workspace

        ws = await get_workspace(self.services.db, None if is_enterprise_install else team_id, enterprise_id)
        return to_bot(ws) if ws is not None and ws.bot_token else None

    async def async_find_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                      user_id: str | None = None,
                                      is_enterprise_install: bool | None = False) -> Installation | None:
        bot = await self.async_find_bot(enterprise_id=enterprise_id, team_id=team_id,
                                        is_enterprise_install=is_enterprise_install)
        if bot is None:
            return None
        return Installation(app_id=None, enterprise_id=bot.enterprise_id, team_id=bot.team_id, user_id=user_id or "",
                            bot_token=bot.bot_token, bot_id=bot.bot_id, bot_user_id=bot.bot_user_id,
                            bot_scopes=bot.bot_scopes, bot_refresh_token=bot.bot_refresh_token,
                            bot_token_expires_at=bot.bot_token_expires_at,
                            is_enterprise_install=bot.is_enterprise_install)

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        from storage.workspaces import purge_workspace

        await purge_workspace(self.services.db, team_id, enterprise_id)

    async def async_delete_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                        user_id: str | None = None) -> None:
        if user_id is None:
            await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)


class DatabaseStateStore(AsyncOAuthStateStore):
    def __init__(self, services: Services):
        self.services = services

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args, **kwargs) -> str:
        from storage.workspaces import issue_state

        return await issue_state(self.services.db, STATE_TTL_SECONDS)

    async def async_consume(self, state: str) -> bool:
        from storage.workspaces import consume_state

        return await consume_state(self.services.db, state)


def oauth_settings(services: Services) -> AsyncOAuthSettings:
    s = services.settings
    return AsyncOAuthSettings(
        client_id=s.slack_client_id, client_secret=s.slack_client_secret.get_secret_value(), scopes=BOT_SCOPES,
        user_scopes=[], installation_store=DatabaseInstallationStore(services),
        state_store=DatabaseStateStore(services), install_path="/slack/install",
        redirect_uri_path="/slack/oauth_redirect", installation_store_bot_only=True,
        token_rotation_expiration_minutes=ROTATE_BEFORE_MINUTES)
