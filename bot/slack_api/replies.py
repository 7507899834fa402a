"""The bot's one threaded message per recording: posted at most once, then only ever edited.

`chat.postMessage` is the one Slack call that cannot simply be repeated: after a 5xx or a dropped
connection Slack may have posted the message anyway. So every reply carries message metadata naming its
recording, and before posting again (or when a crashed worker may have posted without recording the ts)
the thread is searched for that message and the existing one is edited instead. Metadata is no proof of
authorship (any app can post it), so only a message the bot itself posted counts (ids from auth.test).
"""
from __future__ import annotations

import asyncio
import logging
import random

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack_api.client import SERVER_ERRORS
from bot.summary.blocks import SlackMessage

log = logging.getLogger(__name__)

REPLY_EVENT = "voiceid_recording"
POST_TRIES = 4


def reply_metadata(recording_id: int) -> dict:
    return {"event_type": REPLY_EVENT, "event_payload": {"recording_id": recording_id}}


def posted_by(message: dict, me: dict) -> bool:
    """Whether `me` (the auth.test answer for the bot's token) posted `message`: it carries the bot's user or
    bot id, and no other."""
    carried = {key: message[key] for key in ("user", "bot_id") if message.get(key)}
    own = {"user": me.get("user_id"), "bot_id": me.get("bot_id")}
    return bool(carried) and all(own[key] == value for key, value in carried.items())


def is_reply_for(message: dict, recording_id: int, me: dict) -> bool:
    meta = message.get("metadata") or {}
    return (meta.get("event_type") == REPLY_EVENT and posted_by(message, me)
            and (meta.get("event_payload") or {}).get("recording_id") == recording_id)


async def find_reply(client: AsyncWebClient, channel: str, thread_ts: str, recording_id: int) -> str | None:
    """The ts of this recording's bot message in the thread, when an earlier post went through; else None."""
    me = await client.auth_test()
    cursor = None
    try:
        while True:
            page = await client.conversations_replies(channel=channel, ts=thread_ts, include_all_metadata=True,
                                                      limit=200, cursor=cursor)
            for message in page.get("messages") or []:
                if is_reply_for(message, recording_id, me):
                    return message["ts"]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
    except SlackApiError as exc:
        if exc.response.get("error") == "thread_not_found":
            return None
        raise


def _ambiguous(exc: Exception) -> bool:
    """The post may or may not have happened: a 5xx answer or a lost connection."""
    if isinstance(exc, SlackApiError):
        return exc.response.status_code in SERVER_ERRORS
    return isinstance(exc, aiohttp.ClientError | TimeoutError)


async def show_reply(client: AsyncWebClient, *, recording_id: int, channel: str, thread_ts: str, msg: SlackMessage,
                     look_first: bool, replace: bool = True) -> str:
    """Shows `msg` as the recording's reply in the thread and returns its ts: edits the reply an earlier
    post left behind (searched first when `look_first`, and after every ambiguous failure), else posts.
    Progress (`replace=False`, the progress reply's tries) never edits a reply it finds, nor does a first post
    that finds one after an ambiguous failure: it is that very post, or a worker's outcome (a summary posted but
    not yet stored), which progress must not hide."""
    for attempt in range(POST_TRIES):
        found = await find_reply(client, channel, thread_ts, recording_id) if look_first or attempt else None
        if found:
            if look_first and replace:
                await client.chat_update(channel=channel, ts=found, text=msg.text, blocks=msg.blocks)
            return found
        try:
            resp = await client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=msg.text, blocks=msg.blocks,
                                                 metadata=reply_metadata(recording_id))
            return resp["ts"]
        except (TimeoutError, SlackApiError, aiohttp.ClientError) as exc:
            if not _ambiguous(exc) or attempt == POST_TRIES - 1:
                raise
            delay = min(8.0, 0.5 * 2 ** attempt) * random.uniform(0.5, 1.0)
            log.info("recording %s: posting the reply failed ambiguously; checking the thread in %.1f s",
                     recording_id, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def keep_stored(client: AsyncWebClient, channel: str, mine: str, stored: str, msg: SlackMessage | None) -> str:
    """Two replies raced (the listener's progress reply and a fast worker's outcome): the one stored first
    stays, showing `msg` when given; the other is deleted. Returns the stored ts."""
    if stored != mine:
        await client.chat_delete(channel=channel, ts=mine)
        if msg is not None:
            await client.chat_update(channel=channel, ts=stored, text=msg.text, blocks=msg.blocks)
    return stored
