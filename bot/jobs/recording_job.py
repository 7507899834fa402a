"""One recording's job: claim → download → engine → follow → post, resumable from the database.

Every step can be interrupted (crash, restart, lost lease): the next worker that claims the recording
resumes the engine job when the engine still knows it (else submits a new one), and the summary replaces
the progress reply with `chat.update`, so a resumed job still ends with exactly one summary in the thread.
While a job runs, `LeaseKeeper` (`bot.jobs.leases`) renews its lease every third of the lease in the background (download,
upload, engine wait and posting alike) and cancels the job the moment the lease is lost. Every end is
shown: a summary, or a failure message once the attempts are used up (a lease that expired included).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.engines.base import follow, with_provenance
from bot.engines.batches import part_ids
from bot.errors import EngineError, EngineJobEnded, JobNotFound, MediaError, error_from
from bot.failures import new_ref
from bot.jobs.chart_step import ChartStep
from bot.jobs.leases import LeaseKeeper, LeaseLost, RecordingRows
from bot.jobs.transcript_step import PROGRESS_EVERY_SECONDS, TranscriptStep
from bot.logs import log_context
from bot.metrics import JOB_FAILURES, JOB_RETRIES, UPLOAD_TO_SUMMARY, engine_job, since
from bot.pools import CpuPool, TaskSet
from bot.schema import DiarizeRequest, IdentifyRequest, Job, JobStatus, Matching, VoiceprintInput
from bot.scratch import temporary_dir
from bot.services.asking import ask
from bot.services.context import NotInstalled, Recognizer, Services
from bot.services.recordings import checked_file, enrolled_among, speaker_counts, with_hint
from bot.services.summaries import summary_message, transcript_pending
from bot.services.voiceprints import named_by_person
from bot.slack_api.client import client_for
from bot.slack_api.files import download
from bot.slack_api.lookups import channel_members, file_info
from bot.slack_api.replies import keep_stored, show_reply
from bot.slack_api.web_api import SlackWebApi
from bot.speech.audio import media_duration, too_long
from bot.summary.blocks import SlackMessage
from bot.summary.stats import summary_of
from bot.summary.status import (
    identify_again_failed,
    render_failure,
    render_progress,
)
from storage.database import UNAVAILABLE_ERRORS

if TYPE_CHECKING:
    from storage.models import Recording

log = logging.getLogger(__name__)

# Consecutive transient polling errors tolerated before the attempt is given up (and retried later).
MAX_POLL_ERRORS = 10


class NotARecording(Exception):
    """The stored file turned out not to be audio or video (`checked_file` dropped its row)."""


class RecordingJob:
    """One recording's job in this worker (`owner`), resumable from the database by any other."""

    def __init__(self, services: Services, owner: str, *, cpu: CpuPool, speech: Recognizer, background: TaskSet):
        self.services = services
        self.owner = owner
        self.cpu = cpu
        self.rows = RecordingRows(services.db, owner, services.settings.job_lease_seconds)
        self.transcripts = TranscriptStep(services, self.rows, speech)
        self.charts = ChartStep(services, self.rows, cpu, background)
        self._wakeups: dict[str, asyncio.Event] = {}

    @property
    def db(self):
        return self.services.db

    def job_changed(self, job: Job) -> None:
        """An engine webhook arrived: stop waiting for the next poll."""
        event = self._wakeups.get(job.job_id)
        if event is not None:
            event.set()

    def deadline_for(self, duration: float | None) -> datetime:
        """When an engine job on media of `duration` seconds (unknown: the longest allowed) is given up."""
        from bot.schema import utcnow

        s = self.services.settings
        seconds = duration if duration else s.max_recording_hours * 3600
        return utcnow() + timedelta(seconds=s.job_deadline_base_seconds + s.job_deadline_factor * seconds)

    async def run(self, rec: Recording) -> None:
        """Runs one claimed recording with its lease kept alive in the background; a lost lease ends it quietly."""
        renew = functools.partial(self.rows.renew, rec.id)
        with log_context(recording_id=rec.id, team=rec.team_id):
            async with LeaseKeeper.held(renew, self.rows.lease, f"recording {rec.id}"):
                await self._run(rec)

    async def _run(self, rec: Recording) -> None:
        from storage.models import RecordingStatus

        try:
            client = await client_for(self.services, rec.team_id)
        except NotInstalled as exc:
            await self._fail(None, rec, "not_installed", str(exc), retry=False)
            return
        try:
            if rec.state is RecordingStatus.failed:
                await self.notify(client, rec)
                return
            if rec.state is RecordingStatus.succeeded:
                await self.post(client, rec)
                return
            job = await self.identify(client, rec)
            if job.status is not JobStatus.succeeded:
                err = job.error
                raise error_from(err.code if err else "failed", err.message if err else None, job_ended=True)
            await self._complete(rec, job)
            await self.services.engine.forget(job.job_id)  # the result lives on in our database only
            await self.post(client, await self.rows.get(rec.id))
        except LeaseLost:
            log.info("recording %s: lease lost, another worker continues", rec.id)
        except NotARecording:
            pass  # a Slack Connect file that is not audio or video: its row is gone, nothing to show
        except EngineError as exc:
            await self._fail(client, rec, exc.code, exc.message, retry=exc.transient,
                             drop_engine_job=isinstance(exc, EngineJobEnded))
        except SlackApiError as exc:
            await self._fail(client, rec, "slack_error", f"Slack answered {exc.response.get('error')}.", retry=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("recording %s failed unexpectedly", rec.id)
            await self._fail(client, rec, "internal", "Something went wrong on our side.", retry=True)

    # -- steps ------------------------------------------------------------------------------------
    async def identify(self, client: AsyncWebClient, rec: Recording) -> Job:
        engine = self.services.engine
        if rec.engine_job_id:
            try:
                job = await engine.get_job(rec.engine_job_id)
                if job.status is JobStatus.succeeded or not job.status.final:
                    deadline = rec.engine_deadline_at or self.deadline_for(rec.duration)
                    return await self.poll(client, rec, job, deadline)
                log.info("recording %s: engine job %s ended %s; submitting a new one", rec.id, job.job_id,
                         job.status.value)
            except JobNotFound:
                log.info("recording %s: engine lost job %s, resubmitting", rec.id, rec.engine_job_id)
        info = await file_info(client, rec.file_id)
        if not rec.file_checked and (rec := await checked_file(self.services, rec, info)) is None:
            raise NotARecording()
        slack_ms = info.get("duration_ms")
        self.within_limit(slack_ms / 1000 if isinstance(slack_ms, int | float) else None)  # Slack's word, if any
        voiceprints = await self.voiceprints(client, rec)
        if not voiceprints and not engine.offers_diarize:
            raise MediaError("Nobody in this channel has enrolled their voice yet, so nobody can be named.",
                             code="no_voiceprints")
        await self.rows.beat(rec)
        with temporary_dir(self.services.settings.var_dir, "voiceid-rec-") as tmp:
            path = await download(info, client.token, Path(tmp), api_url=client.base_url,
                                  max_bytes=self.services.max_file_bytes)
            await self.rows.beat(rec)
            # The file's own length (header and packet times, not decoded), read in the CPU pool (a hostile file
            # is parsed away from the event loop's process): refused here, before any engine sees (or bills) it;
            # the decoder checks again as it goes.
            duration = await self.cpu.run(media_duration, path, self.limit_seconds)
            deadline = self.deadline_for(self.within_limit(duration))
            url = await engine.upload(path, key=f"{rec.team_id}-{rec.file_id}")
            submitted = time.monotonic()
            try:
                counts = speaker_counts(rec)  # how many speak, when someone said so
                if voiceprints:
                    job = await engine.submit_identify(IdentifyRequest(
                        url=url, voiceprints=voiceprints, matching=Matching(threshold=self.services.threshold),
                        **counts))
                else:  # nobody here has enrolled: who spoke when, with numbered speakers
                    job = await engine.submit_diarize(DiarizeRequest(url=url, **counts))
                await self.rows.beat(rec, engine_job_id=job.job_id, engine_deadline_at=deadline,
                                     diarize_only=not voiceprints)
                job = await self.poll(client, rec, job, deadline)
                kind = "identify" if voiceprints else "diarize"
                engine_job(engine.engine_id, kind, time.monotonic() - submitted, job)
                return job
            finally:
                await engine.release(url)

    def within_limit(self, seconds: float | None) -> float | None:
        """Refuses a recording longer than MAX_RECORDING_HOURS (with a second's grace, as the decoder allows)."""
        if seconds is not None and seconds > self.limit_seconds:
            raise too_long(seconds, self.services.settings.max_recording_hours * 3600)
        return seconds

    @property
    def limit_seconds(self) -> float:
        return self.services.settings.max_recording_hours * 3600 + 1

    async def voiceprints(self, client: AsyncWebClient, rec: Recording) -> list[VoiceprintInput]:
        """The voiceprints of the channel members who enrolled with the active engine (none: a diarize-only job)."""
        return await enrolled_among(self.services, rec.team_id, await channel_members(client, rec.channel_id))

    async def poll(self, client: AsyncWebClient, rec: Recording, job: Job, deadline: datetime) -> Job:
        """Waits for the engine job (webhook or polling) until it is final or its deadline passes, showing its
        progress in the thread."""
        from bot.schema import utcnow

        last_edit, last_bar = 0.0, None

        async def update(job: Job) -> None:
            nonlocal last_edit, last_bar
            progress = min(max(job.progress or 0.0, 0.0), 1.0)
            try:
                await self.rows.beat(rec, progress=progress)
            except UNAVAILABLE_ERRORS as exc:
                # A database blip costs a progress update, not the attempt; an outage outlasting the
                # lease makes the lease keeper end the job.
                log.warning("recording %s: progress not saved (%s)", rec.id, type(exc).__name__)
            now = time.monotonic()
            bar = round(progress * 12)
            if bar != last_bar and now - last_edit >= PROGRESS_EVERY_SECONDS:
                last_edit, last_bar = now, bar
                await self._show_progress(client, rec, progress)

        if job.status.final:
            return job
        wake = asyncio.Event()
        keys = [job.job_id, *(part_ids(job.job_id) or [])]  # a batched job wakes on any part's webhook
        self._wakeups.update(dict.fromkeys(keys, wake))
        try:
            return await follow(self.services.engine, job.job_id, interval=self.services.settings.job_poll_seconds,
                                deadline=time.monotonic() + (deadline - utcnow()).total_seconds(), wake=wake,
                                on_update=update, max_errors=MAX_POLL_ERRORS)
        finally:
            for key in keys:
                self._wakeups.pop(key, None)

    @property
    def transcript_on(self) -> bool:
        return self.services.settings.transcript

    async def post(self, client: AsyncWebClient, rec: Recording) -> None:
        """The summary replaces the progress reply (idempotent) and never waits for recognition; then the
        chart and the transcript go into the thread, and the "Is this you?" questions to their people, at most
        once each: each upload's or DM's start is recorded under the lease first, so a worker taking over never
        sends another."""
        from storage.recordings import mark_posted

        summary, transcript = summary_of(rec), await self.transcripts.record(rec.id)
        msg = summary_message(rec, transcript, transcript_on=self.transcript_on, summary=summary)
        posted_ts = await self._show(client, rec, msg)
        if rec.posted_ts is None:  # the first summary of this recording (not Identify again's)
            since(UPLOAD_TO_SUMMARY, rec.created_at)
        slack = SlackWebApi(client)  # the services' port, for the chart and the questions
        await self.charts.show(slack, rec, summary, alt=msg.text)
        log.info("recording %s: summary posted", rec.id)
        if not await ask(self.services, slack, await self.rows.get(rec.id), self.owner):  # "Is this you?", privately
            raise LeaseLost()
        if transcript_pending(rec, transcript, self.transcript_on):
            rec, transcript = await self.transcripts.transcript(client, await self.rows.get(rec.id), posted_ts)
            await self._show(client, rec, summary_message(rec, transcript, transcript_on=self.transcript_on))
        if not await mark_posted(self.db, rec.id, self.owner, posted_ts):
            raise LeaseLost()
        log.info("recording %s: job done", rec.id)

    async def notify(self, client: AsyncWebClient | None, rec: Recording, ref: str | None = None) -> None:
        """Shows a failed recording's failure in its thread (editing the progress reply), then lets it go.
        A Slack outage leaves it unshown, so the next claim (after the lease runs out) tries again. The
        message quotes `ref`; the log line with that ref holds the details."""
        from storage.recordings import mark_notified

        if client is not None:
            if ref is None:
                ref = new_ref()
                log.info("recording %s: showing failure %s (%s) [ref %s]", rec.id, rec.error_code,
                         rec.error_message, ref)
            if rec.posted_ts and rec.result is not None:  # "Identify again" failed: the summary stays, with why
                note = identify_again_failed(rec.error_code or "failed", rec.error_message or "", ref=ref)
                msg = summary_message(rec, await self.transcripts.record(rec.id), transcript_on=self.transcript_on,
                                      note=note)
            else:
                msg = render_failure(rec.file_name, rec.error_code or "failed", rec.error_message or "", ref=ref)
            try:
                await self._show(client, rec, msg)
            except SlackApiError as exc:
                error = exc.response.get("error")
                log.warning("recording %s: could not post the failure: %s", rec.id, error)
                if error == "ratelimited" or exc.response.status_code >= 500:
                    return
        if await mark_notified(self.db, rec.id, self.owner):
            JOB_FAILURES.labels("recording", rec.error_code or "failed").inc()

    # -- helpers ----------------------------------------------------------------------------------
    async def _complete(self, rec: Recording, job: Job) -> None:
        from storage.recordings import complete

        per_person = await named_by_person(self.services, rec.team_id, job.output or {})  # labels → people
        result = with_hint(rec, with_provenance(self.services.engine, per_person or {}, self.services.threshold))
        output = job.model_copy(update={"output": result}).identify_output()  # the engine's report, made safe
        if not await complete(self.db, rec.id, self.owner, result, output.duration):
            raise LeaseLost()

    async def _show_progress(self, client: AsyncWebClient, rec: Recording, progress: float) -> None:
        rec = rec if rec.reply_ts else await self.rows.get(rec.id)
        if rec.reply_ts:
            msg = render_progress(rec.file_name, progress)
            try:
                await client.chat_update(channel=rec.channel_id, ts=rec.reply_ts, text=msg.text, blocks=msg.blocks)
            except SlackApiError as exc:
                log.info("recording %s: progress update skipped: %s", rec.id, exc.response.get("error"))

    async def _show(self, client: AsyncWebClient, rec: Recording, msg: SlackMessage) -> str:
        """Replace the progress reply, or show `msg` as the recording's one reply in the thread (a reply a
        crashed worker or listener posted without storing its ts is found and edited); returns its ts."""
        from storage.thread import set_reply_ts

        rec = rec if rec.reply_ts else await self.rows.get(rec.id)
        if rec.reply_ts:
            await client.chat_update(channel=rec.channel_id, ts=rec.reply_ts, text=msg.text, blocks=msg.blocks)
            return rec.reply_ts
        ts = await show_reply(client, recording_id=rec.id, channel=rec.channel_id,
                              thread_ts=rec.thread_ts or rec.message_ts, msg=msg, look_first=True)
        return await keep_stored(client, rec.channel_id, ts, await set_reply_ts(self.db, rec.id, ts), msg)

    async def _fail(self, client: AsyncWebClient | None, rec: Recording, code: str, message: str, *, retry: bool,
                    drop_engine_job: bool = False) -> None:
        from storage.models import RecordingStatus
        from storage.recordings import fail

        s = self.services.settings
        rec = await fail(self.db, rec.id, self.owner, code, message, retry=retry, drop_engine_job=drop_engine_job,
                         max_attempts=s.job_max_attempts, backoff=(s.job_retry_base_seconds, s.job_retry_max_seconds))
        ref = new_ref()  # the failure message quotes it; this line holds the details
        log.info("recording %s: %s (%s), now %s [ref %s]", rec.id, code, message, rec.status, ref)
        if rec.state in (RecordingStatus.queued, RecordingStatus.succeeded) and rec.lease_owner is None:
            JOB_RETRIES.labels("recording", code[:64]).inc()
        if rec.state is RecordingStatus.failed and rec.lease_owner == self.owner:
            await self.notify(client, rec, ref)
