"""`/enroll`: the consent modal, the view submission, and `status` / `delete [NAME|all]` / `delete @person` /
`help` — parse, call the enrollment and people services (`bot.services.enrollment`, `bot.services.people`),
render."""
from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import EngineError
from bot.services.context import Services
from bot.services.enrollment import (
    ALL,
    CLIP_MAX_BYTES,
    MAX_PER_PERSON,
    delete_voice,
    deleted_one_text,
    deleted_text,
    enrollment_status,
    quoted,
    submit_enrollment,
    too_many_text,
    voiceprint_name,
    voiceprint_names,
)
from bot.services.people import (
    admin_erased_text,
    admin_refusal,
    erase_person,
    notify_erased,
    self_erased_text,
)
from bot.slack_api.web_api import SlackWebApi
from bot.summary import enroll_views as views
from bot.summary.files import check_media
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


def about_someone(text: str) -> bool:
    """`/enroll delete` names a person (a mention, or an @name Slack did not turn into one), not a voiceprint."""
    return text.startswith(("@", "<@"))


def command_text(text: str) -> str:
    """A slash command's text as typed: Slack sends `&`, `<` and `>` as entities."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@dataclass(frozen=True)
class EnrollRequest:
    """What an `/enroll` command asks for: `action`, and its argument — the voiceprint name typed, the person
    mentioned (empty when Slack did not turn the @name into a mention) or the word not understood."""

    action: Literal["enroll", "status", "delete mine", "delete someone's", "delete named", "help", "unknown"]
    argument: str = ""


def parse_enroll(text: str, user_id: str) -> EnrollRequest:
    """The command's text as a request; nothing is looked up."""
    words = text.strip().split(maxsplit=1)
    sub, rest = (words[0].lower() if words else ""), (words[1] if len(words) > 1 else "")
    if sub in ("", "me"):
        return EnrollRequest("enroll")
    if sub == "status" and not rest:
        return EnrollRequest("status")
    if sub == "delete" and (not rest or rest.lower() == ALL or mentioned_user(rest) == user_id):
        return EnrollRequest("delete mine")
    if sub == "delete" and about_someone(rest):
        return EnrollRequest("delete someone's", mentioned_user(rest) or "")
    if sub == "delete":
        return EnrollRequest("delete named", command_text(rest))
    if sub == "help" and not rest:
        return EnrollRequest("help")
    return EnrollRequest("unknown", sub)


def register(app: AsyncApp, services: Services) -> None:
    def help_text() -> str:
        s = services.settings
        return views.help_text(s.engine, result_days=s.result_retention_days, audit_days=s.audit_retention_days,
                               max_voiceprints=MAX_PER_PERSON)

    @app.command("/enroll")
    async def on_enroll(ack, command: dict, client: AsyncWebClient, respond) -> None:
        """Parse, call, answer. A quick answer is the ack itself (a status or a deletion is a few rows, and a
        person reads "deleted" only once it is); what asks Slack or touches every result runs after the ack."""
        request = parse_enroll(command.get("text") or "", command["user_id"])
        team_id, user_id = command["team_id"], command["user_id"]
        if request.action == "enroll":
            await ack()
            await open_modal(client, command, team_id, user_id)
        elif request.action == "delete someone's":
            await ack()
            services.spawn(answer(respond, delete_for_someone(client, team_id, user_id, request.argument or None)),
                           name=f"erase for {user_id}")
        elif request.action == "delete mine":
            voice = await delete_voice(services, team_id, user_id, actor_id=user_id)
            await ack(deleted_text(voice))
            services.spawn(erase_self(client, team_id, user_id, voice, respond), name=f"erase {user_id}")
        else:
            await ack(await reply(request, team_id, user_id))

    async def reply(request: EnrollRequest, team_id: str, user_id: str) -> str:
        """The answer to a request answered in the ack."""
        if request.action == "status":
            return await enrollment_status(services, team_id, user_id)
        if request.action == "delete named":
            return await delete_named(team_id, user_id, request.argument)
        if request.action == "help":
            return help_text()
        return f"I don't know `/enroll {escape(request.argument)}`.\n\n{help_text()}"

    async def open_modal(client: AsyncWebClient, command: dict, team_id: str, user_id: str) -> None:
        await client.views_open(trigger_id=command["trigger_id"], view=views.enroll_modal(
            retention_days=services.settings.result_retention_days, engine=services.settings.engine,
            existing=await voiceprint_names(services, team_id, user_id), channel_id=command.get("channel_id"),
            max_voiceprints=MAX_PER_PERSON))

    async def answer(respond, text: Awaitable[str]) -> None:
        await respond(await text)

    async def erase_self(client: AsyncWebClient, team_id: str, user_id: str, voice, respond) -> None:
        """After `/enroll delete` is answered: the person's name out of stored results (and posted summaries),
        as background work the process awaits before it stops."""
        erasure = await erase_person(services, SlackWebApi(client), team_id, user_id, actor_id=user_id, via="self",
                                       voice=voice)
        if (more := self_erased_text(erasure)) is not None:
            await respond(more)

    async def delete_named(team_id: str, user_id: str, typed: str) -> str:
        """`/enroll delete NAME`: that one voiceprint of the person (every engine's of that name)."""
        try:
            name = voiceprint_name(typed)
        except ValueError as exc:
            return f"{exc} Nothing was deleted."
        voice = await delete_voice(services, team_id, user_id, actor_id=user_id, name=name)
        return await deleted_one_text(services, team_id, user_id, name, voice)

    async def delete_for_someone(client: AsyncWebClient, team_id: str, actor_id: str, target: str | None) -> str:
        """`/enroll delete @person`: a workspace admin (asked of Slack now) deletes that person's data, and
        the person is told by DM."""
        if target is None:
            return NAME_SOMEONE
        slack = SlackWebApi(client)
        if (refusal := await admin_refusal(slack, team_id, actor_id)) is not None:
            return refusal
        erasure = await erase_person(services, slack, team_id, target, actor_id=actor_id, via="slack admin")
        notified = await notify_erased(slack, target, actor_id, erasure) if erasure.anything else None
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
                check_media(files[0], max_bytes=CLIP_MAX_BYTES)
            except EngineError as exc:
                errors[views.CLIP_BLOCK] = exc.message
        team_id = (body.get("team") or {}).get("id") or context.team_id
        user_id = body["user"]["id"]
        existing = await voiceprint_names(services, team_id, user_id)
        name_error, name = name_problem(values, existing)
        if name_error:
            errors[views.NAME_BLOCK if views.NAME_BLOCK in values else views.CLIP_BLOCK] = name_error
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        text = await submit_enrollment(services, team_id, user_id, files[0]["id"], body["view"].get("id"),
                                       consent_text=views.consent_statement(services.settings.engine), name=name)
        await ack(response_action="update", view=views.message_view("Enroll your voice", text))


def name_problem(values: dict, existing: dict) -> tuple[str | None, str]:
    """(what is wrong with the voiceprint's name in the modal, or None; the name). A name the person already uses
    needs the replace box ticked; a new one needs a free place. Checked again when the voiceprint is saved."""
    try:
        name = voiceprint_name(views.submitted_name(values))
    except ValueError as exc:
        return str(exc), ""
    if name in existing and not views.checked(values, views.REPLACE_BLOCK, views.REPLACE_ACTION):
        return (f"You already have a voiceprint named {quoted(name, plain=True)} (made {existing[name]:%Y-%m-%d}): tick the box "
                "to replace it, or choose another name."), name
    if name not in existing and len(existing) >= MAX_PER_PERSON:
        return too_many_text(list(existing), plain=True), name
    return None, name
