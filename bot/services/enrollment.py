"""Enrollment, free of Slack: the one path from a person's own clip and consent to their stored voiceprint,
and what `/enroll status` and `/enroll delete` do. Users can only enroll themselves: the enrollee is always
the person who submitted their own clip (the caller checks who uploaded it).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.engines.factory import engine_name
from bot.errors import EngineError
from bot.failures import reason_logged
from bot.metrics import ENROLLMENTS
from bot.schema import utcnow
from bot.services.context import Services
from bot.services.voiceprints import voiceprint_from_path
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


@dataclass(frozen=True)
class VoiceDeleted:
    """What deleting a person's voice took: stored voiceprints, and enrollments not finished yet."""

    voiceprints: int
    enrollments: int


async def delete_voice(services: Services, team_id: str, user_id: str, actor_id: str | None) -> VoiceDeleted:
    """Delete wins: the stored voiceprints go (every engine's), and so does any enrollment of this person not
    finished yet (queued ones are dropped, one running here is cancelled; in another process its save is
    refused by the raised deletion generation, which also stays as the mark that only the person's own
    `/enroll` makes a voiceprint of them again)."""
    from storage.enrollments import cancel_queued_enrollments
    from storage.voiceprints import delete_voiceprints

    n = await delete_voiceprints(services.db, team_id, user_id, actor_id=actor_id)
    cancelled = await cancel_queued_enrollments(services.db, team_id, user_id)
    cancelled += cancel_enrollments(services, team_id, user_id)
    return VoiceDeleted(voiceprints=n, enrollments=cancelled)


def deleted_text(deleted: VoiceDeleted) -> str:
    """The answer to `/enroll delete` about the person's voice (their name in results follows separately)."""
    if deleted.enrollments:
        done = "Your voiceprint is deleted, and the" if deleted.voiceprints else "The"
        return f"{done} enrollment you had started was cancelled by this delete: Voice ID keeps no voiceprint of you."
    if deleted.voiceprints == 0:
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


async def enrolled_since(services: Services, team_id: str, user_id: str) -> datetime | None:
    """When the person's voiceprint for the active engine was made, or None: re-enrolling replaces it only
    after they confirmed that in the modal."""
    from storage.voiceprints import get_voiceprint

    vp = await get_voiceprint(services.db, team_id, user_id, services.engine.engine_id)
    return vp.updated_at if vp else None


async def has_voiceprint(services: Services, team_id: str, user_id: str) -> bool:
    return await enrolled_since(services, team_id, user_id) is not None


async def enroll(services: Services, *, team_id: str, user_id: str, clip: Path, consent_at: datetime,
                 generation: int, consent_text: str | None = None) -> str:
    """Make the person's voiceprint from their own `clip` and store it under their consent (its time and the
    text they ticked); returns the answer for them. `generation` is their deletion generation when they asked:
    a delete since then wins.
    Transient failures (engine outage) are raised for the job to retry."""
    from storage.voiceprints import EnrollmentCancelled, upsert_voiceprint

    try:
        new = await voiceprint_from_path(services, clip)
    except EngineError as exc:
        if exc.transient:
            raise
        ENROLLMENTS.labels("refused").inc()
        return not_enrolled(exc.code, exc.message, user_id)
    try:
        _, replaced = await upsert_voiceprint(
            services.db, team_id=team_id, user_id=user_id, engine=services.engine.engine_id, model_id=new.model_id,
            voiceprint=new.voiceprint, consent_at=consent_at, clip_duration=new.clip_duration, generation=generation,
            consent_text=consent_text)
    except EnrollmentCancelled:
        ENROLLMENTS.labels("cancelled").inc()
        return (":warning: Your voice was not enrolled: you deleted your voiceprint with `/enroll delete` while "
                "this enrollment was running, so it was cancelled. Type `/enroll` to enroll again.")
    verb = "replaced" if replaced else "saved"
    ENROLLMENTS.labels(verb).inc()
    return (f":white_check_mark: Your voiceprint is {verb}. From now on Voice ID can name you in recordings "
            "shared to your channels. `/enroll delete` removes it at any time.")


def not_enrolled(code: str, message: str, user_id: str) -> str:
    """The DM for a failed enrollment: the reason if the person can fix it, else a ref into the log."""
    reason = reason_logged(code, message, about=f"enrollment of {user_id}")
    return f":warning: Your voice was not enrolled: {escape(reason)}"


async def submit_enrollment(services: Services, team_id: str, user_id: str, file_id: str,
                            view_id: str | None, consent_text: str | None = None) -> dict:
    """Stores the enrollment as a job (claimed at once by this process's job runner when it has one, else
    queued for a worker) with the consent text the person ticked, and returns what to tell them meanwhile.
    Nothing biometric goes into the row."""
    from storage.enrollments import enqueue_enrollment
    from storage.voiceprints import deletion_generation

    runner = services.runner
    job = await enqueue_enrollment(
        services.db, team_id=team_id, user_id=user_id, file_id=file_id, consent_at=utcnow(),
        consent_text=consent_text,
        generation=await deletion_generation(services.db, team_id, user_id), view_id=view_id,
        owner=runner.owner if runner else None, lease_seconds=services.settings.job_lease_seconds)
    if runner:
        runner.start_enrollment(job)
    else:
        services.kick()
    return "Creating your voiceprint… I will send you the result in a direct message."
