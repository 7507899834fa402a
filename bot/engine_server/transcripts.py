"""`transcription: true` on the engine server: the words of a diarize or identify job, on that job's speakers.

pyannoteAI takes `transcription` on diarize jobs only; this server takes it on identify jobs too. Once the
engine's job has succeeded, Whisper recognises the job's media (still on disk: media goes when the job ends)
and the output becomes what `python -m bot transcribe` prints (`bot.transcription.attribution.transcribed_output`).
The recognizer runs in its own process (`TranscriptionWorker`), started by the first such job, so a server
that never gets one never loads the model, and stopped with the server (an aiohttp cleanup context).
The words are outputs: kept in memory with the job, never written to disk.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.errors import EngineError
from bot.schema import DiarizeOutput, IdentifyOutput
from bot.transcription.attribution import transcribed_output
from bot.transcription.models import ModelFilesError
from bot.transcription.recognizer import DEFAULT_MODEL, TranscriptionWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranscriptionSettings:
    """TRANSCRIPT_MODEL and TRANSCRIPT_LANGUAGE; `var_dir` is where a split model is joined once (`models/`)."""

    model: str = DEFAULT_MODEL
    language: str | None = None
    var_dir: Path = Path("./var")
    max_duration_s: float = 4 * 3600


class ServerTranscriber:
    """The engine server's one recognizer process, made on first use."""

    def __init__(self, settings: TranscriptionSettings):
        self.settings = settings
        self.worker: TranscriptionWorker | None = None
        self.busy = 0  # jobs being transcribed now (the metrics' recognizer busy)

    def _worker(self) -> TranscriptionWorker:
        if self.worker is None:
            s = self.settings
            self.worker = TranscriptionWorker(s.model, s.var_dir, s.language, max_duration_s=s.max_duration_s)
            log.info("starting the speech recognizer (%s) for a job with transcription", s.model)
        return self.worker

    async def transcribe(self, kind: str, output: dict, media: Path, progress: Callable[[float], None]) -> dict:
        """The engine's successful `output` for `media` with its transcription added."""
        self.busy += 1
        try:
            transcription = await self._worker().transcribe(media, progress)
        except ModelFilesError as exc:  # the server's installation, not the client's request
            raise EngineError(f"The engine server cannot transcribe: {exc}") from None
        finally:
            self.busy -= 1
        parsed = (IdentifyOutput if kind == "identify" else DiarizeOutput).model_validate(output)
        return transcribed_output(parsed, transcription)

    async def close(self) -> None:
        if self.worker is not None:
            worker, self.worker = self.worker, None
            await worker.close()

    async def context(self, _app) -> AsyncIterator[None]:
        """aiohttp cleanup context: nothing to start (the first job starts the process); stops it at the end."""
        yield
        await self.close()
