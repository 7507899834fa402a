""""This is me" / "Not me" on a summary: relabel for everyone, update the summary in place, and offer to
enroll from the recording (with consent) while Slack still has the file."""
from __future__ import annotations

from pathlib import Path

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.engines.base import EngineError, MediaError
from bot.engines.schema import utcnow
from bot.jobs.pipeline import summary_of
from bot.slack import enroll_views as views
from bot.slack.enroll import has_voiceprint, reporting_failure, tell_user
from bot.slack.files import download
from bot.slack.services import Services
from bot.slack.speaker_clip import solo_spans, write_speaker_clip
from bot.slack.voiceprints import voiceprint_from_path
from bot.summary.blocks import NOT_ME, THIS_IS_ME, button_value, parse_button_value, render_summary

ENROLL_FROM_RECORDING = "enroll_from_recording"
RECORDING_MODAL = "enroll_recording_modal"


async def refresh_summary(client: AsyncWebClient, rec) -> None:
    """Re-render the posted summary from the stored result and relabels, in place."""
    msg = render_summary(summary_of(rec), file_name=rec.file_name, recording_id=rec.id)
    ts = rec.posted_ts or rec.reply_ts
    if ts:
        await client.chat_update(channel=rec.channel_id, ts=ts, text=msg.text, blocks=msg.blocks)


def offer_blocks(text: str, value: str | None) -> list[dict]:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if value:
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "action_id": ENROLL_FROM_RECORDING, "value": value, "style": "primary",
            "text": {"type": "plain_text", "text": "Enroll from this recording"}}]})
    return blocks


def consent_modal(value: str, existing, retention_days: int) -> dict:
    view = views.enroll_modal(retention_days=retention_days, existing=existing)
    view["blocks"] = [b for b in view["blocks"] if b.get("block_id") != views.CLIP_BLOCK]
    view["blocks"][0] = {"type": "section", "text": {"type": "mrkdwn", "text": (
        "Voice ID will cut up to 30 s of *your* speech from this recording, make a voiceprint from it and "
        "delete the audio.\n\n" + views.explanation(retention_days))}}
    view["callback_id"] = RECORDING_MODAL
    view["private_metadata"] = value
    return view


async def enroll_offer(client: AsyncWebClient, rec, speaker: str) -> tuple[str, list]:
    """Offer enrollment from the recording only while Slack still has the file; else explain why not."""
    try:
        await client.files_info(file=rec.file_id)
    except SlackApiError:
        text = ("Thanks: you are now named for that speaker. Voice ID deletes recording audio after "
                "processing and the file is no longer in Slack, so it cannot enroll you from it: "
                "type `/enroll` with a short clip of your voice instead.")
        return text, offer_blocks(text, None)
    text = ("Thanks: you are now named for that speaker. Want Voice ID to recognise you next time? "
            "It can make your voiceprint from your speech in this recording (you will be asked to consent).")
    return text, offer_blocks(text, button_value(rec.id, speaker))


def register(app: AsyncApp, services: Services) -> None:
    from storage.recordings import get_recording, set_relabel

    async def load(body: dict):
        rec_id, speaker = parse_button_value(body["actions"][0]["value"])
        rec = await get_recording(services.db, rec_id)
        team_id = (body.get("team") or {}).get("id")
        if rec is None or rec.result is None or (team_id and rec.team_id != team_id):
            return None, speaker, None
        return rec, speaker, summary_of(rec).by_speaker(speaker)

    async def private(client: AsyncWebClient, body: dict, text: str, blocks: list | None = None) -> None:
        channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id")
        await client.chat_postEphemeral(channel=channel, user=body["user"]["id"], text=text, blocks=blocks)

    async def load_or_explain(client: AsyncWebClient, body: dict):
        """The button's recording and speaker; tells the clicker privately when the result has expired."""
        rec, speaker, stats = await load(body)
        if stats is None:
            await private(client, body, "This summary is no longer available (results expire).")
        return rec, speaker, stats

    @app.action(NOT_ME)
    async def on_not_me(ack, body: dict, client: AsyncWebClient) -> None:
        await ack()
        user = body["user"]["id"]
        rec, speaker, stats = await load_or_explain(client, body)
        if stats is None:
            return
        if stats.user_id != user:
            await private(client, body, f"Only <@{stats.user_id}> can say that this speaker is not them.")
            return
        rec = await set_relabel(services.db, rec.id, speaker, None, actor_id=user)
        await refresh_summary(client, rec)
        await private(client, body, "Thanks: that speaker is now shown as unknown for everyone.")

    @app.action(THIS_IS_ME)
    async def on_this_is_me(ack, body: dict, client: AsyncWebClient) -> None:
        await ack()
        user = body["user"]["id"]
        rec, speaker, stats = await load_or_explain(client, body)
        if stats is None:
            return
        if stats.user_id is not None:
            await private(client, body, f"This speaker is already named <@{stats.user_id}>.")
            return
        if any(s.user_id == user for s in summary_of(rec).speakers):
            await private(client, body, "You are already named as another speaker in this recording. "
                                        "Press *Not me* there first if that one is wrong.")
            return
        rec = await set_relabel(services.db, rec.id, speaker, user, actor_id=user)
        await refresh_summary(client, rec)
        await private(client, body, *await enroll_offer(client, rec, speaker))

    @app.action(ENROLL_FROM_RECORDING)
    async def on_enroll_from_recording(ack, body: dict, client: AsyncWebClient) -> None:
        await ack()
        from storage.voiceprints import get_voiceprint

        team_id = (body.get("team") or {}).get("id")
        existing = await get_voiceprint(services.db, team_id, body["user"]["id"], services.engine.name)
        await client.views_open(trigger_id=body["trigger_id"], view=consent_modal(
            body["actions"][0]["value"], existing.updated_at if existing else None,
            services.settings.result_retention_days))

    @app.view(RECORDING_MODAL)
    async def on_consent(ack, body: dict, view: dict, client: AsyncWebClient, context: AsyncBoltContext) -> None:
        values = view["state"]["values"]
        if not views.checked(values, views.CONSENT_BLOCK, views.CONSENT_ACTION):
            await ack(response_action="errors", errors={views.CONSENT_BLOCK: "Voice ID needs your consent."})
            return
        team_id = (body.get("team") or {}).get("id") or context.team_id
        user_id = body["user"]["id"]
        if not views.checked(values, views.REPLACE_BLOCK, views.REPLACE_ACTION) and await has_voiceprint(
                services, team_id, user_id):
            await ack(response_action="errors", errors={views.CONSENT_BLOCK: (
                "You are already enrolled: reopen this and tick the box to replace your voiceprint.")})
            return
        await ack(response_action="update", view=views.message_view(
            "Enroll your voice", "Creating your voiceprint… I will send you the result in a direct message."))

        async def work() -> None:
            async with reporting_failure(client, user_id):
                text = await enroll_from_recording(services, client, team_id, user_id, view["private_metadata"])
                await tell_user(client, user_id, text, body["view"].get("id"))

        services.spawn(work(), name=f"enroll-from-recording {team_id}/{user_id}")


async def enroll_from_recording(services: Services, client: AsyncWebClient, team_id: str, user_id: str,
                                value: str) -> str:
    """Only the person named for that speaker may enroll from it; the audio lives in a temp dir only."""
    from storage.recordings import get_recording
    from storage.voiceprints import upsert_voiceprint

    rec_id, speaker = parse_button_value(value)
    rec = await get_recording(services.db, rec_id)
    if rec is None or rec.result is None or rec.team_id != team_id:
        return ":warning: That recording's result has expired; type `/enroll` with a clip of your voice instead."
    stats = summary_of(rec).by_speaker(speaker)
    if stats is None or stats.user_id != user_id:
        return ":warning: You can only enroll from a speaker that is named as you."
    spans = solo_spans(summary_of(rec).segments, speaker)
    if sum(b - a for a, b in spans) < 3.0:
        return ":warning: There is too little speech of yours alone in this recording; use `/enroll` instead."
    try:
        info = (await client.files_info(file=rec.file_id))["file"]
        with services.temp_dir("voiceid-rec-") as tmp:
            source = await download(info, client.token, Path(tmp), max_bytes=services.max_file_bytes)
            clip = Path(tmp) / "speaker.wav"
            await services.run_cpu(write_speaker_clip, source, spans, clip)
            source.unlink(missing_ok=True)
            new = await voiceprint_from_path(services, clip)
    except SlackApiError:
        return ":warning: The recording is no longer in Slack; type `/enroll` with a clip of your voice instead."
    except (EngineError, MediaError) as exc:
        return f":warning: Your voice was not enrolled: {exc.message}"
    _, replaced = await upsert_voiceprint(
        services.db, team_id=team_id, user_id=user_id, engine=services.engine.name, model_id=new.model_id,
        voiceprint=new.voiceprint, consent_at=utcnow(), clip_duration=new.clip_duration)
    return (f":white_check_mark: Your voiceprint is {'replaced' if replaced else 'saved'}, made from your speech "
            "in that recording. `/enroll delete` removes it at any time.")
