"""`/enroll`: the consent modal, the view submission, and `status` / `delete` / `help`.

Users can only enroll themselves: the enrollee is always the user who submitted the modal.
"""
from __future__ import annotations

import contextlib
import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.engines.base import EngineError
from bot.engines.schema import utcnow
from bot.failures import new_ref, reason_logged
from bot.slack import enroll_views as views
from bot.slack.files import check_file
from bot.slack.services import Services
from bot.slack.voiceprints import voiceprint_from_slack_file
from bot.text import escape

log = logging.getLogger(__name__)

# `file_input` caps uploads at 10 MB; a 30 s clip is far smaller anyway.
CLIP_MAX_BYTES = 10 * 1024 * 1024
NOT_OWN_CLIP = ("the clip must be a file you uploaded yourself. Type `/enroll` and record or pick a clip of "
                "your own voice.")


async def enrollment_status(services: Services, team_id: str, user_id: str) -> str:
    from storage.voiceprints import get_voiceprint

    vp = await get_voiceprint(services.db, team_id, user_id)
    if vp is None:
        return "You are not enrolled. Type `/enroll` to add your voice."
    current = "" if vp.engine == services.engine.name else (
        f" Note: the bot now uses the `{services.engine.name}` engine, so enroll again to be recognised.")
    return (f"You are enrolled since {vp.updated_at:%Y-%m-%d %H:%M} UTC with the `{vp.engine}` engine "
            f"(from a {vp.clip_duration:.0f} s clip).{current} `/enroll delete` removes it.")


async def delete_enrollment(services: Services, team_id: str, user_id: str) -> str:
    """Delete wins: the stored voiceprints go, and so does any enrollment of this person still running
    (here it is cancelled; in another process its save is refused by the raised deletion generation)."""
    from storage.voiceprints import delete_voiceprints

    n = await delete_voiceprints(services.db, team_id, user_id, actor_id=user_id)
    cancelled = cancel_enrollments(services, team_id, user_id)
    if cancelled:
        done = "Your voiceprint is deleted, and the" if n else "The"
        return f"{done} enrollment you had started was cancelled by this delete: Voice ID keeps no voiceprint of you."
    if n == 0:
        return "You had no voiceprint to delete."
    return "Your voiceprint is deleted. Recordings shared from now on will not name you."


def enrollment_task_name(team_id: str, user_id: str) -> str:
    return f"enroll {team_id}/{user_id}"


def cancel_enrollments(services: Services, team_id: str, user_id: str) -> int:
    """Cancel this person's enrollments running in this process; returns how many."""
    name = enrollment_task_name(team_id, user_id)
    running = [t for t in services.tasks if t.get_name() == name and not t.done()]
    for task in running:
        task.cancel()
    return len(running)


async def has_voiceprint(services: Services, team_id: str, user_id: str) -> bool:
    """Re-enrolling replaces only after the person confirmed it in the modal."""
    from storage.voiceprints import get_voiceprint

    return await get_voiceprint(services.db, team_id, user_id, services.engine.name) is not None


async def enroll_user(services: Services, client: AsyncWebClient, *, team_id: str, user_id: str,
                      file_id: str, generation: int) -> str:
    """Create and store the voiceprint from the submitted clip; returns the message for the user.
    `generation` is the person's deletion generation when they submitted: a delete since then wins."""
    from storage.voiceprints import EnrollmentCancelled, upsert_voiceprint

    try:
        info = (await client.files_info(file=file_id))["file"]
        if info.get("user") != user_id:  # Slack's file input offers only one's own uploads: never trust that alone
            log.warning("enrollment of %s refused: clip %s was uploaded by %s", user_id, file_id, info.get("user"))
            return not_enrolled("not_own_clip", NOT_OWN_CLIP, user_id)
        new = await voiceprint_from_slack_file(services, info, client.token, max_bytes=CLIP_MAX_BYTES)
    except EngineError as exc:
        return not_enrolled(exc.code, exc.message, user_id)
    except SlackApiError as exc:
        return not_enrolled("slack_error", f"files.info answered {exc.response.get('error')}", user_id)
    try:
        _, replaced = await upsert_voiceprint(
            services.db, team_id=team_id, user_id=user_id, engine=services.engine.name, model_id=new.model_id,
            voiceprint=new.voiceprint, consent_at=utcnow(), clip_duration=new.clip_duration, generation=generation)
    except EnrollmentCancelled:
        return (":warning: Your voice was not enrolled: you deleted your voiceprint with `/enroll delete` while "
                "this enrollment was running, so it was cancelled. Type `/enroll` to enroll again.")
    verb = "replaced" if replaced else "saved"
    return (f":white_check_mark: Your voiceprint is {verb}. From now on Voice ID can name you in recordings "
            "shared to your channels. `/enroll delete` removes it at any time.")


def not_enrolled(code: str, message: str, user_id: str) -> str:
    """The DM for a failed enrollment: the reason if the person can fix it, else a ref into the log."""
    reason = reason_logged(code, message, about=f"enrollment of {user_id}")
    return f":warning: Your voice was not enrolled: {escape(reason)}"


async def tell_user(client: AsyncWebClient, user_id: str, text: str, view_id: str | None = None) -> None:
    """The result privately: a DM from the app, and the modal updated if it is still open."""
    await client.chat_postMessage(channel=user_id, text=text)
    if view_id:
        try:
            await client.views_update(view_id=view_id, view=views.message_view("Enroll your voice", text))
        except SlackApiError:
            pass  # the person closed the modal; the DM is enough


@contextlib.asynccontextmanager
async def reporting_failure(client: AsyncWebClient, user_id: str):
    """An enrollment that breaks on our side still ends with a message to the person, never silence."""
    try:
        yield
    except Exception:
        ref = new_ref()
        log.exception("enrollment of %s failed [ref %s]", user_id, ref)
        await client.chat_postMessage(channel=user_id, text=(
            f":warning: Your voice was not enrolled: something went wrong on our side (ref {ref}). "
            "Please try again later."))


def register(app: AsyncApp, services: Services) -> None:
    @app.command("/enroll")
    async def on_enroll(ack, command: dict, client: AsyncWebClient, respond) -> None:
        sub = (command.get("text") or "").strip().lower()
        team_id, user_id = command["team_id"], command["user_id"]
        if sub in ("", "me"):
            await ack()
            from storage.voiceprints import get_voiceprint

            existing = await get_voiceprint(services.db, team_id, user_id, services.engine.name)
            await client.views_open(trigger_id=command["trigger_id"], view=views.enroll_modal(
                retention_days=services.settings.result_retention_days, engine=services.settings.engine,
                existing=existing.updated_at if existing else None, channel_id=command.get("channel_id")))
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
        from storage.voiceprints import deletion_generation

        generation = await deletion_generation(services.db, team_id, user_id)
        await ack(response_action="update", view=views.message_view(
            "Enroll your voice", "Creating your voiceprint… I will send you the result in a direct message."))

        async def work() -> None:
            async with reporting_failure(client, user_id):
                text = await enroll_user(services, client, team_id=team_id, user_id=user_id, file_id=files[0]["id"],
                                         generation=generation)
                await tell_user(client, user_id, text, body["view"].get("id"))

        services.spawn(work(), name=enrollment_task_name(team_id, user_id))
