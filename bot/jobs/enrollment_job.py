"""One enrollment job: claim → fetch the clip from Slack → voiceprint → save → answer, resumable from the
database like a recording (`LeaseKeeper` keeps the lease; a crashed worker's job is taken over).

Every job ends with exactly one answer to the person (a DM, and the modal updated if still open): the
outcome, or "not enrolled" once the attempts are used up. `/enroll delete` wins: a delete raises the
deletion generation, so a running job's save is refused (answered as cancelled); a job of this process
cancelled by the delete answers nothing, since the delete's own reply told the person.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import EngineError
from bot.jobs.leases import LeaseKeeper
from bot.logs import log_context
from bot.metrics import ENROLLMENTS, JOB_FAILURES, JOB_RETRIES
from bot.pools import TaskSet
from bot.services.context import NotInstalled, Services
from bot.services.enrollment import CLIP_MAX_BYTES, NOT_OWN_CLIP, enroll, enrollment_task_name, not_enrolled
from bot.slack_api.client import client_for, slack_transient
from bot.slack_api.files import download
from bot.summary import enroll_views as views

log = logging.getLogger(__name__)


def failure_of(exc: Exception) -> tuple[str, str]:
    """(code, message) of a failed attempt, for the log and the final answer."""
    if isinstance(exc, EngineError):
        return exc.code, exc.message
    if isinstance(exc, SlackApiError):
        return "slack_error", f"Slack answered {exc.response.get('error')}."
    return "internal", f"{type(exc).__name__}: {exc}"


class Enrollments:
    """Runs this process's enrollment jobs under leases held by `owner` (the job runner's name)."""

    def __init__(self, services: Services, owner: str):
        self.services, self.owner = services, owner
        self.active = TaskSet()

    @property
    def lease(self) -> int:
        return self.services.settings.job_lease_seconds

    def start(self, job) -> asyncio.Task:
        """Runs a job this worker holds; named after the person, so `/enroll delete` can cancel it here."""
        return self.active.spawn(self.run(job), name=enrollment_task_name(job.team_id, job.user_id))

    def cancel(self, team_id: str, user_id: str) -> int:
        """Cancels this person's enrollments running here (`/enroll delete`); returns how many."""
        name = enrollment_task_name(team_id, user_id)
        running = [t for t in self.active if t.get_name() == name and not t.done()]
        for task in running:
            task.cancel()
        return len(running)

    async def run(self, job) -> None:
        from storage.enrollments import finish_enrollment, renew_enrollment

        db = self.services.db
        renew = functools.partial(renew_enrollment, db, job.id, self.owner, self.lease)
        try:
            with log_context(enrollment_id=job.id, team=job.team_id):
                async with LeaseKeeper.held(renew, self.lease, f"enrollment {job.id}"):
                    await self._run(job)
        except asyncio.CancelledError:
            if not await self._deleted_since(job):
                raise  # shutting down: the runner releases the job for another worker
            asyncio.current_task().uncancel()
            await finish_enrollment(db, job.id, self.owner)
            ENROLLMENTS.labels("cancelled").inc()
            log.info("enrollment %s: cancelled by /enroll delete", job.id)

    async def _deleted_since(self, job) -> bool:
        from storage.voiceprints import deletion_generation

        return await deletion_generation(self.services.db, job.team_id, job.user_id) != job.generation

    async def _run(self, job) -> None:
        from storage.enrollments import finish_enrollment, keep_answer

        s = self.services.settings
        try:
            client = await client_for(self.services, job.team_id)
        except NotInstalled:
            log.info("enrollment %s: workspace %s is not installed; nobody to answer", job.id, job.team_id)
            await finish_enrollment(self.services.db, job.id, self.owner)
            return
        text = job.answer
        if text is None:
            if job.attempts > s.job_max_attempts:  # taken over after the last attempt's worker stopped
                text = not_enrolled(job.error_code or "internal", job.error_message or "", job.user_id)
                gave_up(job.error_code or "internal")
            else:
                try:
                    text = await self.enroll_from_slack(client, job)
                except Exception as exc:
                    code, message = failure_of(exc)
                    if not isinstance(exc, EngineError | SlackApiError):
                        log.exception("enrollment %s failed unexpectedly", job.id)
                    if job.attempts < s.job_max_attempts:
                        await self._retry(job, code, message)
                        return
                    text = not_enrolled(code, message, job.user_id)
                    gave_up(code)
            if not await keep_answer(self.services.db, job.id, self.owner, text):
                return  # another worker holds it now and answers
        try:
            await tell_user(client, job.user_id, text, job.view_id)
        except SlackApiError as exc:
            if slack_transient(exc) and job.attempts < 2 * s.job_max_attempts:
                await self._retry(job, *failure_of(exc))
                return
            log.warning("enrollment %s: the answer could not be sent: %s", job.id, exc.response.get("error"))
        await finish_enrollment(self.services.db, job.id, self.owner)
        log.info("enrollment %s: answered", job.id)

    async def enroll_from_slack(self, client: AsyncWebClient, job) -> str:
        """The person's clip from Slack (their own upload only: Slack's file input offers only one's own
        uploads, but that is never trusted alone), then the enrollment service; deleted right after."""
        try:
            info = (await client.files_info(file=job.file_id))["file"]
            if info.get("user") != job.user_id:
                log.warning("enrollment of %s refused: clip %s was uploaded by %s", job.user_id, job.file_id,
                            info.get("user"))
                ENROLLMENTS.labels("refused").inc()
                return not_enrolled("not_own_clip", NOT_OWN_CLIP, job.user_id)
            with self.services.temp_dir("voiceid-clip-") as tmp:
                clip = await download(info, client.token, Path(tmp), api_url=client.base_url, max_bytes=CLIP_MAX_BYTES)
                return await enroll(self.services, team_id=job.team_id, user_id=job.user_id, clip=clip,
                                    consent_at=job.consent_at, generation=job.generation,
                                    consent_text=job.consent_text, name=job.name)
        except EngineError as exc:
            if exc.transient:
                raise
            ENROLLMENTS.labels("refused").inc()
            return not_enrolled(exc.code, exc.message, job.user_id)
        except SlackApiError as exc:
            if slack_transient(exc):
                raise
            ENROLLMENTS.labels("refused").inc()
            return not_enrolled("slack_error", f"files.info answered {exc.response.get('error')}", job.user_id)

    async def _retry(self, job, code: str, message: str) -> None:
        from storage.enrollments import retry_enrollment

        s = self.services.settings
        log.info("enrollment %s: attempt %d failed (%s: %s); retrying later", job.id, job.attempts, code, message)
        JOB_RETRIES.labels("enrollment", code).inc()
        await retry_enrollment(self.services.db, job, self.owner, code, message,
                               backoff=(s.job_retry_base_seconds, s.job_retry_max_seconds))


def gave_up(code: str) -> None:
    """The attempts are used up: the person is told it failed."""
    ENROLLMENTS.labels("failed").inc()
    JOB_FAILURES.labels("enrollment", code).inc()


async def tell_user(client: AsyncWebClient, user_id: str, text: str, view_id: str | None = None) -> None:
    """The result privately: a DM from the app, and the modal updated if it is still open."""
    await client.chat_postMessage(channel=user_id, text=text)
    if view_id:
        try:
            await client.views_update(view_id=view_id, view=views.message_view("Enroll your voice", text))
        except SlackApiError:
            pass  # the person closed the modal; the DM is enough
