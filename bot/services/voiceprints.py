"""Making a voiceprint from the person's own clip (`/enroll`) through the active engine."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.errors import error_from
from bot.schema import JobStatus, VoiceprintRequest
from bot.services.context import Services

# A voiceprint job on a 30 s clip takes well under a second warm; allow for a cold model load.
VOICEPRINT_TIMEOUT = 300.0


@dataclass(frozen=True)
class NewVoiceprint:
    voiceprint: str
    model_id: str
    clip_duration: float


async def voiceprint_from_path(services: Services, path: Path) -> NewVoiceprint:
    """Run a voiceprint job; a refused clip raises the typed error of the engine's code (`bot.errors`)."""
    engine = services.engine
    url = await engine.upload(path)
    try:
        job = await engine.submit_voiceprint(VoiceprintRequest(url=url))
        if not job.status.final:
            job = await engine.wait(job.job_id, poll=0.2, timeout=VOICEPRINT_TIMEOUT)
        await engine.forget(job.job_id)  # the voiceprint lives on in our database only
    finally:
        await engine.release(url)
    if job.status is not JobStatus.succeeded:
        err = job.error
        raise error_from(err.code if err else None, err.message if err else "The voiceprint could not be made.")
    out = job.output or {}
    duration = float(out.get("duration") or 0.0) or await services.run_cpu(clip_seconds, path)
    return NewVoiceprint(voiceprint=job.voiceprint_output().voiceprint,
                         model_id=str(out.get("model") or out.get("modelId") or getattr(engine, "model_id", engine.name)),
                         clip_duration=duration)


def clip_seconds(path: Path) -> float:
    """How long the (already accepted, at most 30 s) clip is; kept with the voiceprint for `/enroll status`."""
    from bot.speech.audio import decode

    return decode(path, name="The clip").duration
