"""Recordings: stored from a file share (one row per file, before Slack's event is acknowledged), their progress
reply posted by the job side, the voiceprints a recording is identified against, and "Identify again"."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import aiohttp

from bot.errors import MediaError, SlackCallError
from bot.failures import new_ref
from bot.schema import VoiceprintInput, utcnow
from bot.services.access import CANNOT_SEE, Outsider, require_member, too_soon
from bot.services.context import NotInstalled, Services, SlackPort
from bot.services.voiceprints import channel_voiceprints
from bot.summary.blocks import identify_again_modal
from bot.summary.files import check_file, is_media
from bot.summary.status import render_progress
from bot.text import escape, speaker_count

if TYPE_CHECKING:
    from storage.models import Recording

log = logging.getLogger(__name__)

def media_files(event: dict, bot_user_id: str | None) -> list[dict]:
    """The audio/video files of a file_share message (and Slack Connect stubs, which only files.info can tell
    about), or none when the bot itself shared them."""
    if event.get("bot_id") or (bot_user_id and event.get("user") == bot_user_id):
        return []
    return [f for f in event.get("files") or [] if is_media(f) or f.get("mode") == "file_access"]


async def store_shared_files(services: Services, event: dict, team_id: str, bot_user_id: str | None) -> int:
    """Stores one recording row per shared file, each on its own (a retried event finds its rows and adds none):
    only the local database, nothing that can fail slowly, so it is done before Slack's event is acknowledged
    and a restart right after loses nothing. A Slack Connect stub is stored unchecked (`announce` asks Slack
    what it is). The progress reply is the job side's (`announce`). A speaker count the message states ("3
    speakers") is stored with each file's row for its engine job (`bot.text.speaker_count`). Returns how many
    rows are new."""
    from storage.recordings import enqueue_recording

    created_count = 0
    hint = speaker_count(event.get("text"))
    for f in media_files(event, bot_user_id):
        stub = f.get("mode") == "file_access"
        _rec, created = await enqueue_recording(
            services.db, team_id=team_id, channel_id=event["channel"], file_id=f["id"],
            file_name=f.get("name") or f["id"], uploader_id=event.get("user"), message_ts=event["ts"],
            thread_ts=event.get("thread_ts"), engine=services.engine.engine_id, checked=not stub,
            speakers=(hint.low, hint.high) if hint else None)
        created_count += created
    return created_count


NO_MEDIA = ("This message has no audio or video file, so there is nothing to identify. Use *Identify speakers* "
            "on the message that shares the recording.")
BOT_NOT_IN_CHANNEL = ("Voice ID is not in this channel, so it cannot reply in the recording's thread. Invite it "
                      "with `/invite @voice-id`, then try again.")
NOT_A_MEMBER = "Only members of this channel (<#{channel}>) can have its recordings identified, so nothing was done."
STARTED = "Identifying the speakers of {name}; the summary will be posted in the message's thread."
ALREADY = ("{name} is already identified, or being identified: its summary is in the message's thread (one per "
           "recording). To run it again, use *Identify again* on that summary.")


async def identify_shared(services: Services, slack: SlackPort, *, team_id: str, channel: str, message: dict,
                          presser: str, bot_user_id: str | None, bot_id: str | None) -> str:
    """The "Identify speakers" message shortcut: queues the audio and video files of a message already in the
    channel (shared before Voice ID joined, or skipped by the automatic rule: another app posted it) as if they
    had just been shared, and returns the private answer for the presser. The intake rules of a share hold: the
    presser and Voice ID must be members of the channel (Slack's member list, now), each file must be audio or
    video within MAX_FILE_MB (else the presser is told, and nothing is posted), and a recording is processed at
    most once (the row is unique per file, so a second press, or one on a file already shared, says so)."""
    from storage.recordings import enqueue_recording

    if (bot_user_id and message.get("user") == bot_user_id) or (bot_id and message.get("bot_id") == bot_id):
        return NO_MEDIA  # the bot's own messages hold its charts and transcripts, never a recording
    files = [await _described(slack, f) for f in message.get("files") or []]
    media = [f for f in files if f and is_media(f)]
    if not media:
        return NO_MEDIA
    try:
        members = await slack.channel_members(channel)
    except SlackCallError as exc:
        if exc.error not in CANNOT_SEE:
            raise
        return BOT_NOT_IN_CHANNEL
    if presser not in members:
        return NOT_A_MEMBER.format(channel=channel)
    if bot_user_id and bot_user_id not in members:
        return BOT_NOT_IN_CHANNEL
    hint = speaker_count(message.get("text"))
    answers, queued = [], 0
    for f in media:
        name = escape(f.get("name") or f["id"])
        try:
            check_file(f, max_bytes=services.max_file_bytes)
        except MediaError as exc:
            answers.append(f"{escape(exc.message)} Nothing was posted.")
            continue
        _rec, created = await enqueue_recording(
            services.db, team_id=team_id, channel_id=channel, file_id=f["id"], file_name=f.get("name") or f["id"],
            uploader_id=message.get("user"), message_ts=message["ts"], thread_ts=message.get("thread_ts"),
            engine=services.engine.engine_id, speakers=(hint.low, hint.high) if hint else None)
        answers.append((STARTED if created else ALREADY).format(name=name))
        queued += created
    if queued:
        log.info("%d recording(s) of message %s queued by the shortcut, pressed by %s", queued, message["ts"], presser)
        services.kick()
    return "\n".join(answers)


async def _described(slack: SlackPort, f: dict) -> dict | None:
    """A message's file as Slack describes it: a Slack Connect stub is asked about (`files.info`); None when it
    is gone."""
    if f.get("mode") != "file_access":
        return f
    try:
        return await slack.file_info(f["id"])
    except MediaError:
        return None


async def checked_file(services: Services, rec: Recording, info: dict):
    """A Slack Connect file's row once Slack has said what the file is: named, or dropped (None) when it is not
    audio or video — as a non-media file shared anywhere else, it gets no reply."""
    from storage.recordings import get_recording
    from storage.thread import drop_unchecked, mark_checked

    if not is_media(info):
        await drop_unchecked(services.db, rec.id)
        log.info("recording %s: file %s is not audio or video; dropped", rec.id, rec.file_id)
        return None
    await mark_checked(services.db, rec.id, info.get("name") or rec.file_id)
    return await get_recording(services.db, rec.id)


async def announce(services: Services, rec: Recording, connect: Callable[[str], Awaitable[SlackPort]]) -> None:
    """Posts a stored recording's progress reply in its thread (Slack as `connect` gives it for the recording's
    workspace; `NotInstalled` without a bot token), for a try claimed with
    `storage.thread.claim_announcement`. At most once: the reply carries the recording's metadata, so a later
    try (after a crash or a failure) or the job showing its outcome finds and edits it; of two replies that
    raced, the one stored first stays. A failure is logged; the next try comes when the hold runs out."""
    from storage.recordings import RecordingNotFound
    from storage.thread import set_reply_ts

    try:
        slack = await connect(rec.team_id)
        if not rec.file_checked:
            try:
                info = await slack.file_info(rec.file_id)
            except MediaError:  # deleted before anyone looked
                info = {}
            if (rec := await checked_file(services, rec, info)) is None:
                return
        ts = await slack.show_reply(recording_id=rec.id, channel=rec.channel_id,
                                    thread_ts=rec.thread_ts or rec.message_ts, msg=render_progress(rec.file_name),
                                    look_first=rec.announce_tries > 1, replace=False)
        try:
            stored = await set_reply_ts(services.db, rec.id, ts)
        except RecordingNotFound:  # deleted meanwhile (an uninstall): the reply has nothing to report
            await slack.delete(rec.channel_id, ts)
            return
        await slack.keep_stored(rec.channel_id, ts, stored, None)
    except (SlackCallError, aiohttp.ClientError, TimeoutError, NotInstalled) as exc:
        detail = exc.error if isinstance(exc, SlackCallError) else f"{type(exc).__name__}: {exc}"
        log.warning("recording %s: progress reply not posted (try %d: %s); will try again [ref %s]", rec.id,
                    rec.announce_tries, detail, new_ref())


def speaker_counts(rec: Recording) -> dict:
    """The recording's speaker-count hint as engine job options: `num_speakers` for an exact number, else
    `min_speakers` and `max_speakers`; none without a hint (the engine counts them itself)."""
    low, high = rec.min_speakers, rec.max_speakers
    if low is None or high is None:
        return {}
    return {"num_speakers": low} if low == high else {"min_speakers": low, "max_speakers": high}


def with_hint(rec: Recording, result: dict) -> dict:
    """The result with the hint its job was given (`speakerHint`), so the summary says it was used: stored with
    the result, it describes this result even after "Identify again" sets another number for the next one."""
    if not speaker_counts(rec):
        return result
    return {**result, "speakerHint": {"low": rec.min_speakers, "high": rec.max_speakers,
                                      "from": rec.speakers_from or "message"}}


async def enrolled_among(services: Services, team_id: str, members: list[str]) -> list[VoiceprintInput]:
    """The voiceprints of these people made with the active engine, under their labels (`services.voiceprints`)."""
    return await channel_voiceprints(services, team_id, members)


NOBODY_ENROLLED = ("Nobody in this channel has enrolled their voice yet, so identifying again could still name "
                   "nobody. Type `/enroll` with a short clip of your own voice first, then press *Identify again*.")
QUEUED = ("Identifying the speakers again against the voiceprints of this channel's members; the summary will be "
          "updated in place.")


def file_gone(file_name: str) -> str:
    return (f"{escape(file_name)} is no longer in Slack, and Voice ID keeps no copy of recordings, so it cannot be "
            "identified again. Share the recording again to have it identified.")


async def identify_again_view(services: Services, *, rec_id: int, channel: str, team_id: str | None) -> dict | str:
    """The modal "Identify again" opens (the number of speakers for the re-run), or the private answer when the
    recording is gone. Only the database is read: Slack's trigger lasts 3 seconds, so every check that asks
    Slack comes with the submission (`identify_again`)."""
    from storage.recordings import PURGED, get_recording

    rec = await get_recording(services.db, rec_id)
    if rec is None or (team_id and rec.team_id != team_id):
        return PURGED
    hint = None
    if rec.min_speakers is not None and rec.max_speakers is not None:
        hint = (rec.min_speakers, rec.max_speakers, rec.speakers_from or "message")
    return identify_again_modal(rec.id, channel, rec.file_name, hint)


async def identify_again(services: Services, slack: SlackPort, *, rec_id: int, clicker: str,
                         team_id: str | None, speakers: int | None = None) -> str:
    """Checks and queues the re-run of a recording's identification; returns the private answer for the presser.
    Who may: a member of the recording's channel (checked with Slack), in the recording's workspace, outside the
    recording's and their own cooldown; it needs the result still retained, someone in the channel enrolled, and
    the file still in Slack (the audio is never kept after processing, so the job downloads it again). The re-run
    is the recording's own durable job, queued behind the recordings already waiting; `speakers` (from the modal)
    is the number of speakers it passes to the engine, None keeping the recording's hint."""
    from storage.recordings import PURGED, IdentifyRefused, IdentifyTooSoon, get_recording, requeue_identify

    rec = await get_recording(services.db, rec_id)
    if rec is None or (team_id and rec.team_id != team_id):
        return PURGED
    try:
        members = await require_member(slack, rec, clicker)
    except Outsider as exc:
        return exc.reason
    if rec.result is None:
        return PURGED
    if not await enrolled_among(services, rec.team_id, members):
        return NOBODY_ENROLLED
    try:
        await slack.file_info(rec.file_id)
    except MediaError:
        return file_gone(rec.file_name)
    s = services.settings
    try:
        await requeue_identify(services.db, rec.id, actor_id=clicker, speakers=speakers,
                               recording_cooldown=timedelta(minutes=s.identify_again_recording_cooldown_minutes),
                               person_cooldown=timedelta(minutes=s.identify_again_person_cooldown_minutes))
    except IdentifyTooSoon as exc:
        return too_soon(s, exc.retry_at, per_person=exc.per_person, now=utcnow())
    except IdentifyRefused as exc:
        return exc.reason
    log.info("recording %s: identify again requested by %s", rec.id, clicker)
    services.kick()
    return QUEUED
