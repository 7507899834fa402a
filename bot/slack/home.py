"""The App Home: a person's own voice log (`bot.summary.home`), published to them alone when they open it
(`app_home_opened`, Home tab) and again after each of its buttons: "Not me" (the summary's correction, through
`bot.services.claims`) and delete (`/enroll delete`'s erasure, through `bot.services.people`).

Whose data is shown and changed is always the signed request's own user in its own workspace, never an id
from a button's value; a button's recording is checked against the stored result (`own_not_me_refusal`).
"""
from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.engines.factory import engine_name
from bot.errors import SlackCallError
from bot.failures import new_ref
from bot.services.claims import NOT_ME_DONE, correct, own_not_me_refusal
from bot.services.context import Services
from bot.services.enrollment import deleted_text
from bot.services.people import erase_person, person_log, self_erased_text
from bot.slack_api.web_api import SlackWebApi
from bot.summary import enroll_views as views
from bot.summary.blocks import parse_button_value
from bot.summary.home import HOME_DELETE, HOME_NOT_ME, home_view

log = logging.getLogger(__name__)

NOT_UPDATED = ("Done: that speaker is now unknown in what Voice ID keeps, but the summary in the channel could not "
               "be updated (ref {ref}).")


def team_of(body: dict, context: AsyncBoltContext) -> str:
    return (body.get("team") or {}).get("id") or body.get("team_id") or context.team_id


def register(app: AsyncApp, services: Services) -> None:
    async def publish(client: AsyncWebClient, team_id: str, user_id: str, answer: str | None = None) -> None:
        """The person's Home, read now, to them alone."""
        s = services.settings
        found = await person_log(services.db, team_id, user_id, result_days=s.result_retention_days)
        view = home_view(found, active_engine=engine_name(services.engine.engine_id), answer=answer,
                         notice_text=views.explanation(s.result_retention_days, s.engine),
                         kept=views.retention_text(s.result_retention_days, s.audit_retention_days))
        await client.views_publish(user_id=user_id, view=view)

    @app.event("app_home_opened")
    async def on_home_opened(event: dict, body: dict, client: AsyncWebClient, context: AsyncBoltContext) -> None:
        if event.get("tab") == "home":
            await publish(client, team_of(body, context), event["user"])

    @app.action(HOME_NOT_ME)
    async def on_not_me(ack, body: dict, client: AsyncWebClient, context: AsyncBoltContext) -> None:
        """As the summary's "Not me", without the channel-membership rule (see `bot.services.claims.correct`)."""
        await ack()
        team_id, user_id = team_of(body, context), body["user"]["id"]
        rec_id, speaker = parse_button_value(body["actions"][0]["value"])
        try:
            answer = await correct(services, SlackWebApi(client), rec_id=rec_id, speaker=speaker, team_id=team_id,
                                   clicker=user_id, user_id=None, refusal=own_not_me_refusal, done=NOT_ME_DONE,
                                   members_only=False)
        except SlackCallError as exc:  # stored; the bot may have left the channel, or the summary is gone
            ref = new_ref()
            log.warning("recording %s: summary not updated after Not me in Home: %s [ref %s]", rec_id,
                        exc.error, ref)
            answer = NOT_UPDATED.format(ref=ref)
        await publish(client, team_id, user_id, answer)

    @app.action(HOME_DELETE)
    async def on_delete(ack, body: dict, client: AsyncWebClient, context: AsyncBoltContext) -> None:
        """`/enroll delete`, after Slack's confirmation dialog."""
        await ack()
        team_id, user_id = team_of(body, context), body["user"]["id"]
        erasure = await erase_person(services, SlackWebApi(client), team_id, user_id, actor_id=user_id, via="home")
        answer = " ".join(part for part in (deleted_text(erasure.voice), self_erased_text(erasure)) if part)
        await publish(client, team_id, user_id, answer)
