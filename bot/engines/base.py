"""The one interface every speaker engine implements, and the typed errors they raise.

The interface mirrors the pyannoteAI web API (upload media, submit a voiceprint or identify job, read a
job) so the embedded engine, the pyannoteAI cloud client and our engine-server client are swappable.
"""
from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from bot.engines.schema import DiarizeRequest, IdentifyRequest, Job, VoiceprintRequest


class EngineError(Exception):
    """An error with a stable `code` and a message fit to show a person.

    `transient` errors (rate limits, outages) are worth retrying; the others are final for that input.
    """

    code = "engine_error"
    transient = False

    def __init__(self, message: str, *, code: str | None = None, transient: bool | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if transient is not None:
            self.transient = transient

    def to_output(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class MediaError(EngineError):
    """The input itself is unusable: not audio, corrupt, empty, silent, too long, too short, two voices."""

    code = "bad_media"


class VoiceprintError(EngineError):
    """A voiceprint is malformed or was made by another engine or model."""

    code = "incompatible_voiceprint"


class RequestError(EngineError):
    """The request failed validation (HTTP 400); `errors` lists `{field, message}`."""

    code = "invalid_request"

    def __init__(self, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.errors = errors or []


class AuthError(EngineError):
    code = "unauthorized"


class PaymentRequired(EngineError):
    code = "payment_required"


class RateLimited(EngineError):
    code = "rate_limited"
    transient = True

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class EngineUnavailable(EngineError):
    code = "engine_unavailable"
    transient = True


class JobNotFound(EngineError):
    """The engine does not know the job (expired, or lost with an engine restart): resubmit it."""

    code = "job_not_found"
    transient = True


ProgressCallback = Callable[[float], None]


class Engine(ABC):
    """Async speaker engine. Implementations: `local`, `pyannoteai` (cloud), `server` (our engine server)."""

    name: str = "engine"

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

    async def wait(self, job_id: str, *, poll: float = 0.2, timeout: float | None = None) -> Job:
        """Poll until the job is final; a convenience for the CLI and tests (the bot polls from its scheduler)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = await self.get_job(job_id)
            if job.status.final:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise EngineUnavailable(f"job {job_id} did not finish within {timeout:.0f} s")
            await asyncio.sleep(poll)
