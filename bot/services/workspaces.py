"""A workspace's lifecycle: what leaves with it when Voice ID is uninstalled or its bot token revoked."""
from __future__ import annotations

from bot.services.context import Services


async def forget_workspace(services: Services, team_id: str, enterprise_id: str | None) -> None:
    """Uninstalled or its bot token revoked: tokens, voiceprints and results go (a running enrollment's save is
    refused by the workspace's raised deletion generation)."""
    from storage.workspaces import purge_workspace

    await purge_workspace(services.db, team_id, enterprise_id)
