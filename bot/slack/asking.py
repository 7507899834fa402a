""""Is this you?" answers: parse the press (the question's id, nothing else is trusted), call
`bot.services.asking.answer`, tell the presser by DM when their question's message does not show the outcome."""
from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.asking import NO_LONGER, answer
from bot.services.context import Services
from bot.slack_api.web_api import SlackWebApi
from bot.summary.ask import NEAR_NO, NEAR_YES


def register(app: AsyncApp, services: Services) -> None:
    async def press(client: AsyncWebClient, body: dict, yes: bool) -> None:
        user = body["user"]["id"]
        value = str(body["actions"][0].get("value") or "")
        if not (value.isdigit() and len(value) <= 12):
            text, shown = NO_LONGER, False
        else:
            text, shown = await answer(services, SlackWebApi(client), question_id=int(value),
                                       team_id=(body.get("team") or {}).get("id"), user=user, yes=yes)
        if not shown:
            await client.chat_postMessage(channel=user, text=text)

    @app.action(NEAR_YES)
    async def on_yes(ack, body: dict, client: AsyncWebClient) -> None:
        await ack()
        await press(client, body, True)

    @app.action(NEAR_NO)
    async def on_no(ack, body: dict, client: AsyncWebClient) -> None:
        await ack()
        await press(client, body, False)
