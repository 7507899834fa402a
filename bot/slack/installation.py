"""Multi-workspace OAuth over our own tables: bolt's installation and state stores (token rotation for jobs:
`bot.slack_api.tokens`).

Installs are per workspace (the manifest leaves org deploy off): an Enterprise Grid org-wide install is refused
with a page saying so, its token revoked and nothing stored. `/slack/install` needs no login, so the OAuth
states it stores are bounded: each expires after `STATE_TTL_SECONDS`, and at most `MAX_PENDING_INSTALLS` are
pending at once (beyond that the page asks to try again in a few minutes).
"""
from __future__ import annotations

import logging

from slack_bolt.error import BoltError
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bot.services.context import Services
from bot.slack_api.client import make_client
from bot.slack_api.tokens import ROTATE_BEFORE_MINUTES, bot_fields, to_bot

log = logging.getLogger(__name__)

# Exactly the scopes the bot uses (keep in step with manifest.yml).
BOT_SCOPES = ["commands", "chat:write", "files:read", "files:write", "channels:history", "groups:history",
              "channels:read", "groups:read", "users:read"]
STATE_TTL_SECONDS = 600
MAX_PENDING_INSTALLS = 1000

ORG_INSTALL_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Voice ID: install it per workspace</title></head>
<body><h1>Voice ID cannot be installed for a whole organization</h1>
<p>Voice ID is installed workspace by workspace, not across an Enterprise Grid organization at once. Nothing was
installed, and the access Slack granted for the organization was given back.</p>
<p>To use Voice ID, install it to each workspace that wants it (an org admin can choose the workspaces in the
Slack admin pages).</p></body></html>"""
BUSY_TEXT = ("Too many installs of Voice ID were started in the last few minutes and not finished. "
             "Please try again in a few minutes.")


class OrgInstallRefused(BoltError):
    """An org-wide install reached the OAuth redirect: bolt shows our failure page for it."""


class InstallsBusy(Exception):
    """`MAX_PENDING_INSTALLS` OAuth states are pending: the install page answers 503 until some expire."""


class DatabaseInstallationStore(AsyncInstallationStore):
    """Bot-only installations in the Workspace table (user tokens are never requested)."""

    def __init__(self, services: Services):
        self.services = services

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        from storage.workspaces import save_workspace

        await self._refuse_org_wide(installation)
        await save_workspace(self.services.db, **bot_fields(installation),
                             installer_user_id=installation.user_id)

    async def async_save_bot(self, bot: Bot) -> None:
        from storage.workspaces import save_workspace

        await self._refuse_org_wide(bot)
        await save_workspace(self.services.db, **bot_fields(bot))

    async def _refuse_org_wide(self, bot: Bot | Installation) -> None:
        """An org-wide install is not stored; the token Slack issued for it is revoked, so the org is not left
        with a working token that nothing answers for."""
        if not bot.is_enterprise_install:
            return
        log.warning("refused an org-wide install for enterprise %s", bot.enterprise_id)
        if bot.bot_token:
            try:
                await make_client(self.services.settings, bot.bot_token).auth_revoke()
            except SlackApiError as exc:
                log.warning("could not revoke the refused org-wide token: %s", exc.response.get("error"))
        raise OrgInstallRefused("org-wide installs are not supported")

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
        from storage.workspaces import TooManyStates, issue_state

        try:
            return await issue_state(self.services.db, STATE_TTL_SECONDS, cap=MAX_PENDING_INSTALLS)
        except TooManyStates as exc:
            log.warning("install page refused: %s", exc)
            raise InstallsBusy(BUSY_TEXT) from exc

    async def async_consume(self, state: str) -> bool:
        from storage.workspaces import consume_state

        return await consume_state(self.services.db, state)


async def _success(args: AsyncSuccessArgs) -> BoltResponse:
    return await args.default.success(args)


async def _failure(args: AsyncFailureArgs) -> BoltResponse:
    """Bolt's own failure page, except for a refused org-wide install, which gets a page that says why."""
    if not isinstance(args.error, OrgInstallRefused):
        return await args.default.failure(args)
    return BoltResponse(status=403, body=ORG_INSTALL_PAGE, headers={
        "Content-Type": "text/html; charset=utf-8",
        "Set-Cookie": [args.settings.state_utils.build_set_cookie_for_deletion()]})


def oauth_settings(services: Services) -> AsyncOAuthSettings:
    s = services.settings
    return AsyncOAuthSettings(
        client_id=s.slack_client_id, client_secret=s.slack_client_secret.get_secret_value(), scopes=BOT_SCOPES,
        user_scopes=[], installation_store=DatabaseInstallationStore(services),
        state_store=DatabaseStateStore(services), install_path="/slack/install",
        redirect_uri_path="/slack/oauth_redirect", installation_store_bot_only=True,
        token_rotation_expiration_minutes=ROTATE_BEFORE_MINUTES,
        state_expiration_seconds=STATE_TTL_SECONDS,
        callback_options=AsyncCallbackOptions(success=_success, failure=_failure))
