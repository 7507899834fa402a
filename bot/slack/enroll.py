"""`/enroll`: the consent modal, the view submission, and `status` / `delete` / `help`.

Users can only enroll themselves: the enrollee is always the user who submitted the modal.
"""
from __future__ import annotations

import logging
from datetime import datetime

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.engines.factory import engine_name
from bot.errors import EngineError
from bot.failures import reason_logged
from bot.schema import utcnow
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
    engine = services.engine
    current = "" if vp.engine == engine.engine_id else (
        f" Note: the bot now uses the `{engine.name}` engine, so enroll again to be recognised.")
    return (f"You are enrolled since {vp.updated_at:%Y-%m-%d %H:%M} UTC with the `{engine_name(vp.engine)}` engine "
            f"(from a {vp.clip_duration:.0f} s clip).{current} `/enroll delete` removes it.")


async def delete_enrollment(services: Services, team_id: str, user_id: str) -> str:
    """Delete wins: the stored voiceprints go, and so does any enrollment of this person not finished yet
    (queued ones are dropped, one running here is cancelled; in another process its save is refused by the
    raised deletion generation)."""
    from storage.enrollments import cancel_queued_enrollments
    from storage.voiceprints import delete_voiceprints

    n = await delete_voiceprints(services.db, team_id, user_id, actor_id=user_id)
    cancelled = await cancel_queued_enrollments(services.db, team_id, user_id)
    cancelled += cancel_enrollments(services, team_id, user_id)
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

    return await get_voiceprint(services.db, team_id, user_id, services.engine.engine_id) is not None


def slack_transient(exc: SlackApiError) -> bool:
    """Slack is rate limiting or failing: worth another attempt later."""
    return exc.response.get("error") == "ratelimited" or exc.response.status_code >= 500


async def enroll_user(services: Services, client: AsyncWebClient, *, team_id: str, user_id: str,
                      file_id: str, generation: int, consent_at: datetime | None = None) -> str:
    """Create and store the voiceprint from the submitted clip; returns the message for the user.
    `generation` is the person's deletion generation when they submitted: a delete since then wins.
    Transient failures (engine outage, Slack 5xx/429) are raised for the job to retry."""
    from storage.voiceprints import EnrollmentCancelled, upsert_voiceprint

    try:
        info = (await client.files_info(file=file_id))["file"]
        if info.get("user") != user_id:  # Slack's file input offers only one's own uploads: never trust that alone
            log.warning("enrollment of %s refused: clip %s was uploaded by %s", user_id, file_id, info.get("user"))
            return not_enrolled("not_own_clip", NOT_OWN_CLIP, user_id)
        new = await voiceprint_from_slack_file(services, info, client.token, max_bytes=CLIP_MAX_BYTES)
    except EngineError as exc:
        if exc.transient:
            raise
        return not_enrolled(exc.code, exc.message, user_id)
    except SlackApiError as exc:
        if slack_transient(exc):
            raise
        return not_enrolled("slack_error", f"files.info answered {exc.response.get('error')}", user_id)
    try:
        _, replaced = await upsert_voiceprint(
            services.db, team_id=team_id, user_id=user_id, engine=services.engine.engine_id, model_id=new.model_id,
            voiceprint=new.voiceprint, consent_at=consent_at or utcnow(), clip_duration=new.clip_duration, generation=generation)
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


def register(app: AsyncApp, services: Services) -> None:
    @app.command("/enroll")
    async def on_enroll(ack, command: dict, client: AsyncWebClient, respond) -> None:
        sub = (command.get("text") or "").strip().lower()
        team_id, user_id = command["team_id"], command["user_id"]
        if sub in ("", "me"):
            await ack()
            from storage.voiceprints import get_voiceprint

            existing = await get_voiceprint(services.db, team_id, user_id, services.engine.engine_id)
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
        await ack(**await submit_enrollment(services, team_id, user_id, files[0]["id"], body["view"].get("id")))


async def submit_enrollment(services: Services, team_id: str, user_id: str, file_id: str,
                            view_id: str | None) -> dict:
    """Stores the enrollment as a job (claimed at once by this process's job runner when it has one, else
    queued for a worker) and returns the view submission's answer. Nothing biometric goes into the row."""
    from storage.enrollments import enqueue_enrollment
    from storage.voiceprints import deletion_generation

    runner = services.enrollments
    job = await enqueue_enrollment(
        services.db, team_id=team_id, user_id=user_id, file_id=file_id, consent_at=utcnow(),
        generation=await deletion_generation(services.db, team_id, user_id), view_id=view_id,
        owner=runner.owner if runner else None, lease_seconds=services.settings.job_lease_seconds)
    if runner:
        runner.start(job)
    else:
        services.kick()
    return {"response_action": "update", "view": views.message_view(
        "Enroll your voice", "Creating your voiceprint… I will send you the result in a direct message.")}
