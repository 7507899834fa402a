"""`/enroll`: the consent modal, the view submission, and `status` / `delete` / `delete @person` / `help` —
parse, call the enrollment and people services (`bot.services.enrollment`, `bot.services.people`), render."""
from __future__ import annotations

import re

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import EngineError
from bot.services.context import Services
from bot.services.enrollment import (
    CLIP_MAX_BYTES,
    delete_voice,
    deleted_text,
    enrolled_since,
    enrollment_status,
    has_voiceprint,
    submit_enrollment,
)
from bot.services.people import (
    admin_erased_text,
    admin_refusal,
    erase_person,
    notify_erased,
    self_erased_text,
)
from bot.slack_api import enroll_views as views
from bot.slack_api.files import check_file
from bot.text import escape

# With "Escape channels, users, and links" on (manifest.yml), Slack sends a picked @person as <@U123|name>.
MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
NAME_SOMEONE = ("Name the person with an @-mention picked from Slack's list, for example `/enroll delete @jane`. "
                "(If you did, the app's `/enroll` command needs *Escape channels, users, and links* turned on, as "
                "manifest.yml sets it.) Nothing was changed.")


def mentioned_user(text: str) -> str | None:
    """The one Slack user id a command's argument mentions, or None."""
    found = MENTION.fullmatch(text.strip())
    return found.group(1) if found else None


def register(app: AsyncApp, services: Services) -> None:
    def help_text() -> str:
        s = services.settings
        return views.help_text(s.engine, result_days=s.result_retention_days, audit_days=s.audit_retention_days)

    @app.command("/enroll")
    async def on_enroll(ack, command: dict, client: AsyncWebClient, respond) -> None:
        words = (command.get("text") or "").strip().split(maxsplit=1)
        sub, rest = (words[0].lower() if words else ""), (words[1] if len(words) > 1 else "")
        team_id, user_id = command["team_id"], command["user_id"]
        if sub in ("", "me"):
            await ack()
            existing = await enrolled_since(services, team_id, user_id)
            await client.views_open(trigger_id=command["trigger_id"], view=views.enroll_modal(
                retention_days=services.settings.result_retention_days, engine=services.settings.engine,
                existing=existing, channel_id=command.get("channel_id")))
        elif sub == "status" and not rest:
            await ack(await enrollment_status(services, team_id, user_id))
        elif sub == "delete" and (not rest or mentioned_user(rest) == user_id):
            voice = await delete_voice(services, team_id, user_id, actor_id=user_id)
            await ack(deleted_text(voice))
            erasure = await erase_person(services, client, team_id, user_id, actor_id=user_id, via="self",
                                         voice=voice)
            if (more := self_erased_text(erasure)) is not None:
                await respond(more)
        elif sub == "delete":
            await ack()
            await respond(await delete_for_someone(client, team_id, user_id, mentioned_user(rest)))
        elif sub == "help" and not rest:
            await ack(help_text())
        else:
            await ack(f"I don't know `/enroll {escape(sub)}`.\n\n{help_text()}")

    async def delete_for_someone(client: AsyncWebClient, team_id: str, actor_id: str, target: str | None) -> str:
        """`/enroll delete @person`: a workspace admin (asked of Slack now) deletes that person's data, and
        the person is told by DM."""
        if target is None:
            return NAME_SOMEONE
        if (refusal := await admin_refusal(client, team_id, actor_id)) is not None:
            return refusal
        erasure = await erase_person(services, client, team_id, target, actor_id=actor_id, via="slack admin")
        notified = await notify_erased(client, target, actor_id, erasure) if erasure.anything else None
        return admin_erased_text(erasure, target, notified)

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
        text = await submit_enrollment(services, team_id, user_id, files[0]["id"], body["view"].get("id"),
                                       consent_text=views.consent_statement(services.settings.engine))
        await ack(response_action="update", view=views.message_view("Enroll your voice", text))
