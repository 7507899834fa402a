"""The transcript step of a recording's job: recognition (unless the words are stored), then the `.md` + `.vtt`
upload at most once, its start recorded under the lease; how it ended is stored so the summary can say so."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import EngineError
from bot.failures import new_ref
from bot.jobs.leases import LeaseLost, RecordingRows
from bot.metrics import UPLOAD_TO_TRANSCRIPT, since
from bot.scratch import temporary_dir
from bot.services.charts import display_names, people
from bot.services.context import Recognizer, Services
from bot.services.summaries import summary_message
from bot.slack_api.files import download
from bot.slack_api.lookups import file_info
from bot.slack_api.web_api import SlackWebApi
from bot.summary.stats import summary_of
from bot.summary.status import TRANSCRIPT_INTERRUPTED, transcript_name
from bot.summary.transcript import has_transcript, render_markdown, render_vtt, speaker_names, stored_turns
from storage.models import Recording, RecordingOutput

log = logging.getLogger(__name__)

# chat.update is Tier 3 (about 50 a minute per workspace): one progress edit every few seconds at most.
PROGRESS_EVERY_SECONDS = 3.0


class TranscriptStep:
    """The recording job's transcript step, working on the rows the job holds (`rows`), recognising in `speech`."""

    def __init__(self, services: Services, rows: RecordingRows, speech: Recognizer) -> None:
        self.services, self.rows, self.speech = services, rows, speech

    async def record(self, rec_id: int) -> RecordingOutput:
        """How the recording's transcript stands (a blank record when nothing was begun)."""
        from storage.thread import TRANSCRIPT, get_output

        return await get_output(self.rows.db, rec_id, TRANSCRIPT)

    async def transcript(self, client: AsyncWebClient, rec: Recording, summary_ts: str
                         ) -> tuple[Recording, RecordingOutput]:
        """The transcript step; whatever happens, how it ended is stored (a link, an error ref, or that an
        earlier worker's upload was interrupted) so the summary can say so. Returns the recording and its
        transcript's record as stored."""
        from storage.thread import end_transcript

        file_id = url = None
        if (await self.record(rec.id)).started_at is not None:
            log.info("recording %s: an earlier worker began the transcript upload and stopped; not uploading "
                     "it twice", rec.id)
            error = TRANSCRIPT_INTERRUPTED
        else:
            file_id, url, error = await self.make_transcript(client, rec, summary_ts)
        if not await end_transcript(self.rows.db, rec.id, self.rows.owner, file_id=file_id, url=url, error=error):
            raise LeaseLost()
        if file_id:
            since(UPLOAD_TO_TRANSCRIPT, rec.created_at)
        log.info("recording %s: transcript %s", rec.id, "posted" if error is None else f"not posted ({error})")
        return await self.rows.get(rec.id), await self.record(rec.id)

    async def make_transcript(self, client: AsyncWebClient, rec: Recording, summary_ts: str) -> tuple[str | None, ...]:
        """Recognition (unless the words are already stored), then the `.md` + `.vtt` upload at most once (its
        start recorded under the lease). Returns (file id, link, None), or (None, None, ref) on any failure:
        a failed transcript never fails the recording; the ref's log line has the details."""
        from storage.thread import start_transcript

        try:
            if not has_transcript(rec.result):
                rec = await self.recognize(client, rec, summary_ts)
            if not await start_transcript(self.rows.db, rec.id, self.rows.owner):
                raise LeaseLost()
            return *await self.upload_transcript(client, rec), None
        except (LeaseLost, asyncio.CancelledError):
            raise
        except Exception as exc:
            ref = new_ref()
            detail = exc.response.get("error") if isinstance(exc, SlackApiError) else f"{type(exc).__name__}: {exc}"
            log.warning("recording %s: no transcript (%s) [ref %s]", rec.id, detail, ref,
                        exc_info=not isinstance(exc, SlackApiError | EngineError))
            return None, None, ref

    async def recognize(self, client: AsyncWebClient, rec: Recording, summary_ts: str) -> Recording:
        """Downloads the recording again (the identify step's copy is gone once the engine has it, and a
        resumed or taken-over job never had one), recognises it in the recognizer's process while the
        summary shows progress, deletes the copy, and stores the attributed words in the result."""
        from bot.transcription.attribution import transcript_result
        from storage.thread import save_transcript

        info = await file_info(client, rec.file_id)
        progress = [0.0]
        with temporary_dir(self.services.settings.var_dir, "voiceid-asr-") as tmp:
            path = await download(info, client.token, Path(tmp), api_url=client.base_url,
                                  max_bytes=self.services.max_file_bytes)
            await self.rows.beat(rec)
            shown = asyncio.get_running_loop().create_task(self._transcript_progress(client, rec.id, summary_ts,
                                                                                     progress))
            try:
                words = (await self.speech.transcribe(
                    path, lambda fraction: progress.__setitem__(0, fraction))).words
            finally:
                shown.cancel()
        if not await save_transcript(self.rows.db, rec.id, self.rows.owner, transcript_result(rec.result, words)):
            raise LeaseLost()
        return await self.rows.get(rec.id)

    async def _transcript_progress(self, client: AsyncWebClient, rec_id: int, ts: str, progress: list[float]):
        """Shows recognition progress in the summary's Transcript line, one edit every few seconds at most."""
        shown = None
        while True:
            await asyncio.sleep(PROGRESS_EVERY_SECONDS)
            bar = round(progress[0] * 12)
            if bar == shown:
                continue
            shown = bar
            rec = await self.rows.get(rec_id)  # fresh relabels: a correction meanwhile must not be undone
            msg = summary_message(rec, transcript_on=True, progress=progress[0])
            try:
                await client.chat_update(channel=rec.channel_id, ts=ts, text=msg.text, blocks=msg.blocks)
            except SlackApiError as exc:
                log.info("recording %s: transcript progress skipped: %s", rec_id, exc.response.get("error"))

    async def upload_transcript(self, client: AsyncWebClient, rec: Recording) -> tuple[str | None, str | None]:
        """Both files in one upload (one Slack call that is not idempotent); returns the `.md` file's id and link."""
        summary = summary_of(rec)
        names = speaker_names(summary, await display_names(SlackWebApi(client), people(summary)))
        turns = stored_turns(rec.result)
        title = f"Transcript of {rec.file_name}"
        await self.rows.beat(rec)
        up = await client.files_upload_v2(
            channel=rec.channel_id, thread_ts=rec.thread_ts or rec.message_ts, file_uploads=[
                {"content": render_markdown(rec.file_name, turns, names),
                 "filename": transcript_name(rec.file_name, "md"), "title": title},
                {"content": render_vtt(turns, names), "filename": transcript_name(rec.file_name, "vtt"),
                 "title": title + " (captions)"}])
        first = (up.get("files") or [{}])[0]
        return first.get("id"), first.get("permalink")
