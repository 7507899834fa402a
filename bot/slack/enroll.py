"""`/enroll`: the consent modal, the view submission, and `status` / `delete` / `help` — parse, call the
enrollment service (`bot.services.enrollment`), render."""
from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import EngineError
from bot.services.context import Services
from bot.services.enrollment import (
    CLIP_MAX_BYTES,
    delete_enrollment,
    enrolled_since,
    enrollment_status,
    has_voiceprint,
    submit_enrollment,
)
from bot.slack_api import enroll_views as views
from bot.slack_api.files import check_file
from bot.text import escape


def register(app: AsyncApp, services: Services) -> None:
    @app.command("/enroll")
    async def on_enroll(ack, command: dict, client: AsyncWebClient, respond) -> None:
        sub = (command.get("text") or "").strip().lower()
        team_id, user_id = command["team_id"], command["user_id"]
        if sub in ("", "me"):
            await ack()
            existing = await enrolled_since(services, team_id, user_id)
            await client.views_open(trigger_id=command["trigger_id"], view=views.enroll_modal(
                retention_days=services.settings.result_retention_days, engine=services.settings.engine,
                existing=existing, channel_id=command.get("channel_id")))
        elif sub == "status":
            await ack(await enrollment_status(services, team_id, user_id))
        elif sub == "delete":
            await ack(await delete_enrollment(services, team_id, user_id))
        elif sub == "help":
            await ack(views.help_text(services.settings.engine))
        else:
            await ack(f"I don't know `/enroll {escape(sub)}`.\n\n{views.help_text(services.settings.engine)}")

    @app.view(views.MODAL_CALLBACK)
    async def on_submit(ack, body: dict, view: dict, client: AsyncWebClient, context: AsyncBoltContext) -> None:
        values = view["state"]["values"]
        files = views.submitted_files(values)
        errors: dict[str, str] = {}
        if not views.checked(values, views.CONSENT_BLOCK, views.CONSENT_ACTION):
            errors[views.CONSENT_BLOCK] = "Voice ID needs your consent to keep a voiceprint."
        if len(files) != 1:
            errors[views.CLIP_BLOCK] = "Add exactly one clip of your voice."
        else:
            try:
                check_file(files[0] | {"url_private": files[0].get("url_private") or "-"}, max_bytes=CLIP_MAX_BYTES)
            except EngineError as exc:
                errors[views.CLIP_BLOCK] = exc.message
        team_id = (body.get("team") or {}).get("id") or context.team_id
        user_id = body["user"]["id"]
        if not views.checked(values, views.REPLACE_BLOCK, views.REPLACE_ACTION) and await has_voiceprint(
                services, team_id, user_id):
            errors[views.REPLACE_BLOCK if views.REPLACE_BLOCK in values else views.CLIP_BLOCK] = (
                "You are already enrolled: tick the box to replace your voiceprint (reopen /enroll).")
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        text = await submit_enrollment(services, team_id, user_id, files[0]["id"], body["view"].get("id"))
        await ack(response_action="update", view=views.message_view("Enroll your voice", text))
