"""Bot token rotation for work outside bolt (jobs call Slack without bolt's per-request authorize step), and
the mapping between our workspace rows and slack_sdk's `Bot`."""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from slack_sdk.errors import SlackTokenRotationError
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator

from bot.schema import utcnow
from bot.slack_api.client import make_client

log = logging.getLogger(__name__)

# Rotate tokens this long before they expire (they last 12 h); the scheduler checks every 30 min.
ROTATE_BEFORE_MINUTES = 120


def _when(epoch: int | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


def _epoch(when: datetime | None) -> int | None:
    return int(when.timestamp()) if when else None


def bot_fields(bot: Bot | Installation) -> dict:
    return {"team_id": bot.team_id, "enterprise_id": bot.enterprise_id,
            "is_enterprise_install": bool(bot.is_enterprise_install), "bot_user_id": bot.bot_user_id,
            "bot_id": bot.bot_id, "bot_token": bot.bot_token, "bot_refresh_token": bot.bot_refresh_token,
            "bot_token_expires_at": _when(bot.bot_token_expires_at),
            "bot_scopes": ",".join(bot.bot_scopes or []) if isinstance(bot.bot_scopes, list) else bot.bot_scopes}


def to_bot(ws) -> Bot:
    return Bot(app_id=None, enterprise_id=ws.enterprise_id, team_id=ws.team_id, bot_token=ws.bot_token,
               bot_id=ws.bot_id, bot_user_id=ws.bot_user_id, bot_scopes=ws.bot_scopes or "",
               bot_refresh_token=ws.bot_refresh_token, bot_token_expires_at=_epoch(ws.bot_token_expires_at),
               is_enterprise_install=ws.is_enterprise_install, installed_at=ws.installed_at.timestamp())


async def refresh_expiring_tokens(services) -> int:
    """Rotate bot tokens that expire soon (jobs call Slack outside bolt, which only rotates per request)."""
    from sqlmodel import select

    from storage.models import Workspace
    from storage.workspaces import save_workspace

    soon = utcnow() + timedelta(minutes=ROTATE_BEFORE_MINUTES)
    async with services.db.session() as s:
        rows = (await s.exec(select(Workspace).where(Workspace.uninstalled_at.is_(None),
                                                     Workspace.bot_refresh_token.is_not(None),
                                                     Workspace.bot_token_expires_at < soon))).all()
    rotator = AsyncTokenRotator(client_id=services.settings.slack_client_id,
                                client_secret=services.settings.slack_client_secret.get_secret_value(),
                                client=make_client(services.settings))
    rotated = 0
    for ws in rows:
        try:
            new = await rotator.perform_bot_token_rotation(bot=to_bot(ws),
                                                           minutes_before_expiration=ROTATE_BEFORE_MINUTES)
        except SlackTokenRotationError as exc:  # one refused workspace must not keep the others from rotating
            log.warning("workspace %s: Slack refused to rotate its bot token (%s); it stops working when it expires",
                        ws.team_id or ws.enterprise_id, exc.api_error.response.get("error"))
            continue
        if new is not None:
            await save_workspace(services.db, **bot_fields(new))
            rotated += 1
    return rotated
