"""The services' Slack port (`bot.services.context.SlackPort`) over one workspace's Web API client: each call
as the client makes it (with its retries, `bot.slack_api.client`), Slack's refusal turned into
`bot.errors.SlackCallError`, so services never see slack_sdk."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import SlackCallError
from bot.slack_api import lookups, replies
from bot.slack_api.client import client_for
from bot.summary.blocks import SlackMessage


@contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except SlackApiError as exc:
        raise SlackCallError(exc.response.get("error"), exc.response.status_code) from exc


class SlackWebApi:
    """One workspace's Slack, as the services use it (the methods are `SlackPort`'s)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def channel_members(self, channel: str) -> list[str]:
        with translated():
            return await lookups.channel_members(self.client, channel)

    async def permalink(self, channel: str, ts: str) -> str | None:
        with translated():
            return (await self.client.chat_getPermalink(channel=channel, message_ts=ts)).get("permalink")

    async def post(self, channel: str, msg: SlackMessage) -> tuple[str | None, str | None]:
        with translated():  # a message of text only sends no blocks
            sent = await self.client.chat_postMessage(channel=channel, text=msg.text, blocks=msg.blocks or None)
        return sent.get("channel"), sent.get("ts")

    async def update(self, channel: str, ts: str, msg: SlackMessage) -> None:
        with translated():
            await self.client.chat_update(channel=channel, ts=ts, text=msg.text, blocks=msg.blocks)

    async def delete(self, channel: str, ts: str) -> None:
        with translated():
            await self.client.chat_delete(channel=channel, ts=ts)

    async def upload(self, *, channel: str, thread_ts: str, content: bytes, filename: str, title: str,
                     alt: str) -> str | None:
        with translated():
            up = await self.client.files_upload_v2(channel=channel, thread_ts=thread_ts, content=content,
                                                   filename=filename, title=title, alt_txt=alt)
        return (up.get("files") or [{}])[0].get("id") or (up.get("file") or {}).get("id")

    async def delete_file(self, file_id: str) -> None:
        with translated():
            await self.client.files_delete(file=file_id)

    async def file_info(self, file_id: str) -> dict:
        with translated():
            return await lookups.file_info(self.client, file_id)

    async def user_info(self, user_id: str) -> dict:
        with translated():
            return (await self.client.users_info(user=user_id))["user"]

    async def show_reply(self, *, recording_id: int, channel: str, thread_ts: str, msg: SlackMessage,
                         look_first: bool, replace: bool = True) -> str:
        with translated():
            return await replies.show_reply(self.client, recording_id=recording_id, channel=channel,
                                            thread_ts=thread_ts, msg=msg, look_first=look_first, replace=replace)

    async def keep_stored(self, channel: str, mine: str, stored: str, msg: SlackMessage | None) -> str:
        with translated():
            return await replies.keep_stored(self.client, channel, mine, stored, msg)


async def slack_for(services, team_id: str) -> SlackWebApi:
    """The port for a workspace outside bolt (`client_for`: `NotInstalled` without a bot token)."""
    return SlackWebApi(await client_for(services, team_id))
