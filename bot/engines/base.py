"""The one interface every speaker engine implements (its errors: `bot.errors`).

The interface mirrors the pyannoteAI web API (upload media, submit a voiceprint or identify job, read a
job) so the embedded engine, the pyannoteAI cloud client and our engine-server client are swappable.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.errors import EngineError, EngineJobEnded, JobNotFound, RequestError
from bot.schema import DiarizeRequest, IdentifyRequest, Job, Provenance, VoiceprintRequest

log = logging.getLogger(__name__)


class Engine(ABC):
    """Async speaker engine. Implementations: `local`, `pyannoteai` (cloud), `server` (our engine server)."""

    engine_id: str = "engine"  # the stable key voiceprints and recordings are stored under
    name: str = "engine"  # for people: messages and logs

    @property
    @abstractmethod
    def recommended_threshold(self) -> float:
        """The `matching.threshold` the product uses by default with this engine (0–100)."""

    @abstractmethod
    async def upload(self, path: Path, key: str | None = None) -> str:
        """Make a local media file reachable to the engine; returns the URL to put in a job request."""

    @abstractmethod
    async def submit_voiceprint(self, request: VoiceprintRequest) -> Job: ...

    @abstractmethod
    async def submit_identify(self, request: IdentifyRequest) -> Job: ...

    async def submit_diarize(self, request: DiarizeRequest) -> Job:
        """Who spoke when, no voiceprints (`POST /v1/diarize`); engines that cannot refuse the request."""
        raise RequestError(f"{self.name} does not offer diarize-only jobs.")

    @property
    def offers_diarize(self) -> bool:
        """Whether this engine runs diarize-only jobs (it overrides `submit_diarize`)."""
        return type(self).submit_diarize is not Engine.submit_diarize

    @abstractmethod
    async def get_job(self, job_id: str) -> Job: ...

    async def release(self, url: str) -> None:
        """Forget uploaded media once its job is over (privacy: no audio kept after processing)."""

    async def forget(self, job_id: str) -> None:
        """Forget a finished job and its output once the caller has stored what it needs."""

    async def close(self) -> None:
        """Release pools, sessions and sockets."""

    async def ready(self) -> str | None:
        """None when the engine can take jobs now, else a short reason (a readiness probe; cheap, no job)."""
        return None

    async def wait(self, job_id: str, *, poll: float = 0.2, timeout: float | None = None) -> Job:
        """Until the job is final (`follow` without the extras); for the CLI, enrollment and tests."""
        return await follow(self, job_id, interval=poll,
                            deadline=None if timeout is None else time.monotonic() + timeout)


def with_provenance(engine: Engine, output: dict, threshold: float) -> dict:
    """A succeeded job's output with the provenance the bot stores (`bot.schema.Provenance`): the engine that
    ran it (id and name), the pipeline and models it reports (ours report them; pyannoteAI's `model` when its
    output has one) and the threshold: the one the engine says it applied, else `threshold`, the one the bot
    sent; none for a diarize-only output (nobody was compared). Malformed reports are left out, not guessed."""
    reported = output.get("provenance") if isinstance(output.get("provenance"), dict) else {}

    def text(value) -> str | None:
        return value[:100] if isinstance(value, str) and value.strip() else None

    said = reported.get("threshold")
    compared = "voiceprints" in output or "identification" in output
    provenance = Provenance(
        engine=engine.engine_id, name=engine.name, pipeline=text(reported.get("pipeline")),
        models=text(reported.get("models")) or text(output.get("model")),
        threshold=(said if isinstance(said, int | float) and 0 <= said <= 100 else threshold) if compared else None)
    return {**output, "provenance": provenance.wire()}


JobUpdate = Callable[[Job], Awaitable[None]]


async def follow(engine: Engine, job_id: str, *, interval: float, deadline: float | None = None,
                 wake: asyncio.Event | None = None, on_update: JobUpdate | None = None,
                 max_errors: int = 1) -> Job:
    """The one loop that waits for an engine job to end. Reads it every `interval` seconds (at once when `wake`
    is set: a webhook arrived), hands each unfinished state to `on_update`, and tolerates up to `max_errors - 1`
    transient read errors in a row (a job the engine lost never). Past `deadline` (`time.monotonic()`) the job
    is given up as ended, so a retry submits a new one."""
    errors = 0
    while True:
        try:
            job = await engine.get_job(job_id)
            errors = 0
        except JobNotFound:
            raise
        except EngineError as exc:
            errors += 1
            if not exc.transient or errors >= max_errors:
                raise
            log.info("engine job %s: engine busy or unreachable (%s); reading it again", job_id, exc.code)
        else:
            if job.status.final:
                return job
            if on_update is not None:
                await on_update(job)
        if deadline is not None and time.monotonic() > deadline:
            raise EngineJobEnded("The speaker engine did not finish in time.", code="timeout")
        if wake is None:
            await asyncio.sleep(interval)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=interval)
            wake.clear()
