""""Identify again" on a summary: the press opens a modal asking for the number of speakers (optional); its
submission calls `bot.services.recordings.identify_again`, which checks everything, and the answer is private."""
from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.context import Services
from bot.services.recordings import identify_again, identify_again_view
from bot.slack.feedback import answer_privately
from bot.slack_api.web_api import SlackWebApi
from bot.summary.blocks import IDENTIFY_AGAIN, SPEAKERS_BLOCK, parse_identify_again, parse_recording_value

NOT_OURS = "This button is not one of Voice ID's summaries."


def register(app: AsyncApp, services: Services) -> None:
    @app.action(IDENTIFY_AGAIN)
    async def on_identify_again(ack, body: dict, client: AsyncWebClient) -> None:
        await ack()
        channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id") or ""
        try:
            rec_id = parse_recording_value(body["actions"][0]["value"])
        except ValueError:
            await answer_privately(client, body, NOT_OURS)
            return
        view = await identify_again_view(services, rec_id=rec_id, channel=channel,
                                         team_id=(body.get("team") or {}).get("id"))
        if isinstance(view, str):
            await answer_privately(client, body, view)
            return
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.view(IDENTIFY_AGAIN)
    async def on_identify_again_submitted(ack, body: dict, client: AsyncWebClient) -> None:
        try:
            rec_id, channel, speakers = parse_identify_again(body["view"])
        except ValueError as exc:
            await ack(response_action="errors", errors={SPEAKERS_BLOCK: str(exc)})
            return
        await ack()
        text = await identify_again(services, SlackWebApi(client), rec_id=rec_id, clicker=body["user"]["id"],
                                    team_id=(body.get("team") or {}).get("id"), speakers=speakers)
        await answer_privately(client, {"user": body["user"], "channel": {"id": channel}}, text)
