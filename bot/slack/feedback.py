"""The correction buttons on a summary: parse the press, call `bot.services.claims`, answer privately."""
from __future__ import annotations

from slack_bolt.async_app import AsyncApp
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
from bot.summary.blocks import NOT_ME, THIS_IS_ME, UNDO_CLAIM, parse_button_value


def register(app: AsyncApp, services: Services) -> None:
    async def press(client: AsyncWebClient, body: dict, claimant: str | None, refusal: Refusal, done: str) -> None:
        rec_id, speaker = parse_button_value(body["actions"][0]["value"])
        clicker = body["user"]["id"]
        text = await correct(services, client, rec_id=rec_id, speaker=speaker,
                             team_id=(body.get("team") or {}).get("id"), clicker=clicker,
                             user_id=claimant, refusal=refusal, done=done)
        channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id")
        await client.chat_postEphemeral(channel=channel, user=clicker, text=text)

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
