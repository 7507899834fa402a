"""The correction buttons on a summary: parse the press, call `bot.services.claims`, answer privately."""
from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.claims import (
    CLAIMED,
    NOT_ME_DONE,
    UNDONE,
    Refusal,
    claim_refusal,
    correct,
    not_me_refusal,
    undo_refusal,
)
from bot.services.context import Services
from bot.slack_api.web_api import SlackWebApi
from bot.summary.blocks import NOT_ME, THIS_IS_ME, UNDO_CLAIM, parse_button_value

# Slack shows an ephemeral message only to someone in the channel; a public channel's summary can be read and
# its buttons pressed without joining it.
NO_EPHEMERAL = {"user_not_in_channel", "channel_not_found", "not_in_channel"}


async def answer_privately(client: AsyncWebClient, body: dict, text: str) -> None:
    """The presser's answer: ephemeral where they pressed, else (they are not in that channel) by DM."""
    user = body["user"]["id"]
    channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id")
    try:
        await client.chat_postEphemeral(channel=channel, user=user, text=text)
    except SlackApiError as exc:
        if exc.response.get("error") not in NO_EPHEMERAL:
            raise
        await client.chat_postMessage(channel=user, text=text)


def register(app: AsyncApp, services: Services) -> None:
    async def press(client: AsyncWebClient, body: dict, claimant: str | None, refusal: Refusal, done: str) -> None:
        rec_id, speaker = parse_button_value(body["actions"][0]["value"])
        text = await correct(services, SlackWebApi(client), rec_id=rec_id, speaker=speaker,
                             team_id=(body.get("team") or {}).get("id"), clicker=body["user"]["id"],
                             user_id=claimant, refusal=refusal, done=done)
        await answer_privately(client, body, text)

    @app.action(NOT_ME)
    async def on_not_me(ack, body: dict, client: AsyncWebClient) -> None:
        await ack()
        await press(client, body, None, not_me_refusal, NOT_ME_DONE)

    @app.action(THIS_IS_ME)
    async def on_this_is_me(ack, body: dict, client: AsyncWebClient) -> None:
        await ack()
        await press(client, body, body["user"]["id"], claim_refusal, CLAIMED)

    @app.action(UNDO_CLAIM)
    async def on_undo_claim(ack, body: dict, client: AsyncWebClient) -> None:
        await ack()
        await press(client, body, None, undo_refusal, UNDONE)
