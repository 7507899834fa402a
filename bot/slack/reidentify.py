""""Identify again" on a summary: parse the press, call `bot.services.recordings.identify_again`, answer
privately."""
from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.context import Services
from bot.services.recordings import identify_again
from bot.slack.feedback import answer_privately
from bot.summary.blocks import IDENTIFY_AGAIN, parse_recording_value


def register(app: AsyncApp, services: Services) -> None:
    @app.action(IDENTIFY_AGAIN)
    async def on_identify_again(ack, body: dict, client: AsyncWebClient) -> None:
        await ack()
        try:
            rec_id = parse_recording_value(body["actions"][0]["value"])
        except ValueError:
            text = "This button is not one of Voice ID's summaries."
        else:
            text = await identify_again(services, client, rec_id=rec_id, clicker=body["user"]["id"],
                                        team_id=(body.get("team") or {}).get("id"))
        await answer_privately(client, body, text)
