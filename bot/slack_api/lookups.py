"""Reading what Slack knows about a recording: its file, and who is in its channel."""
from __future__ import annotations

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import MediaError

FILE_GONE_ERRORS = {"file_not_found", "file_deleted"}


async def file_info(client: AsyncWebClient, file_id: str) -> dict:
    """The Slack file (`files.info`); a file deleted from Slack is a MediaError the person can read (the
    recording's audio is never kept after processing, so it can only come from Slack)."""
    try:
        return (await client.files_info(file=file_id))["file"]
    except SlackApiError as exc:
        if exc.response.get("error") in FILE_GONE_ERRORS:
            raise MediaError("The recording is no longer in Slack (it was deleted), and Voice ID keeps no copy "
                             "of it.", code="file_gone") from exc
        raise


async def channel_members(client: AsyncWebClient, channel: str) -> list[str]:
    """Everyone in the channel (`conversations.members`, every page)."""
    members: list[str] = []
    cursor = None
    while True:
        page = await client.conversations_members(channel=channel, limit=1000, cursor=cursor)
        members += page.get("members") or []
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return members
