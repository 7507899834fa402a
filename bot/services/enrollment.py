"""Enrollment, free of Slack: the one path from a person's own clip and consent to their stored voiceprint,
and what `/enroll status` and `/enroll delete` do. Users can only enroll themselves: the enrollee is always
the person who submitted their own clip (the caller checks who uploaded it). A person keeps up to
`MAX_PER_PERSON` voiceprints, each under a name they give it (one per microphone: "headset", "phone"), each
with its own consent; enrolling under a name they already use replaces that voiceprint.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.errors import EngineError
from bot.failures import reason_logged
from bot.metrics import ENROLLMENTS
from bot.pools import CpuPool
from bot.schema import utcnow
from bot.services.context import LocalRunner, Services
from bot.services.voiceprints import list_voiceprints, voiceprint_from_path
from bot.text import escape
from storage.models import VOICEPRINT_NAME_MAX
from storage.voiceprints import DEFAULT_NAME, MAX_PER_PERSON

log = logging.getLogger(__name__)

# `file_input` caps uploads at 10 MB; a 30 s clip is far smaller anyway.
CLIP_MAX_BYTES = 10 * 1024 * 1024
NOT_OWN_CLIP = ("the clip must be a file you uploaded yourself. Type `/enroll` and record or pick a clip of "
                "your own voice.")


ALL = "all"  # `/enroll delete all`: not a name a voiceprint can have
_SPACES = re.compile(r"\s+")


def voiceprint_name(text: str | None) -> str:
    """The name a person typed for a voiceprint, as stored: control and invisible characters as spaces, runs of
    spaces as one, lower case, at most VOICEPRINT_NAME_MAX characters. Untrusted all the same: escaped wherever
    it is shown. Raises ValueError with what to fix."""
    flat = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text or "")
    name = _SPACES.sub(" ", flat).strip().lower()
    if not name:
        raise ValueError("Give the voiceprint a name, such as “headset” or “phone”.")
    if len(name) > VOICEPRINT_NAME_MAX:
        raise ValueError(f"A voiceprint's name has at most {VOICEPRINT_NAME_MAX} characters.")
    if name == ALL or name.startswith(("@", "<@")):
        raise ValueError(f"“{ALL}” and names starting with @ are kept for `/enroll delete`: choose another name.")
    return name


def quoted(name: str, *, plain: bool = False) -> str:
    """A voiceprint's name (untrusted text) inside a message: escaped for mrkdwn, or as typed for plain text (a
    modal's error, which Slack never formats)."""
    return f"“{name if plain else escape(name)}”"


async def enrollment_status(services: Services, team_id: str, user_id: str) -> str:
    mine = await list_voiceprints(services, team_id, user_id)
    if not mine:
        return "You are not enrolled. Type `/enroll` to add your voice."
    usable = [v for v in mine if v.usable]
    since = min(v.created_at for v in mine)
    plural = "" if len(mine) == 1 else "s"
    lines = [f"You are enrolled since {since:%Y-%m-%d %H:%M} UTC with {len(mine)} voiceprint{plural} (at most "
             + f"{MAX_PER_PERSON} per engine):"]
    for v in mine:
        note = "" if v.usable else f" — not used: Voice ID now uses `{services.engine.name}`, enroll again"
        lines.append(f"• {quoted(v.name)}: made {v.updated_at:%Y-%m-%d %H:%M} UTC with the `{v.engine_name}` "
                     f"engine from a {v.clip_duration:.0f} s clip{note}")
    if not usable:
        lines.append(f"None of them is for the `{services.engine.name}` engine Voice ID now uses, so enroll again "
                     "to be recognised.")
    lines.append("`/enroll` adds one (or replaces the one with the name you give); `/enroll delete` followed by a "
                 "name removes that one; `/enroll delete` alone removes them all.")
    return "\n".join(lines)


@dataclass(frozen=True)
class VoiceDeleted:
    """What deleting a person's voice took: stored voiceprints, and enrollments not finished yet."""

    voiceprints: int
    enrollments: int


async def delete_voice(services: Services, runner: LocalRunner | None, team_id: str, user_id: str,
                       actor_id: str | None, name: str | None = None) -> VoiceDeleted:
    """Delete wins: the stored voiceprints go (every engine's, or only those named `name`), and so does any
    enrollment of this person not finished yet (queued ones are dropped, one running here in `runner` is cancelled; in
    another process its save is refused by the raised deletion generation, which also stays as the mark that
    only the person's own `/enroll` makes a voiceprint of them again)."""
    from storage.enrollments import cancel_queued_enrollments
    from storage.voiceprints import delete_voiceprints

    n = await delete_voiceprints(services.db, team_id, user_id, actor_id=actor_id, name=name)
    cancelled = await cancel_queued_enrollments(services.db, team_id, user_id)
    cancelled += cancel_enrollments(runner, team_id, user_id)
    return VoiceDeleted(voiceprints=n, enrollments=cancelled)


def deleted_text(deleted: VoiceDeleted) -> str:
    """The answer to `/enroll delete` about the person's voice (their name in results follows separately)."""
    done = ("Your voiceprint is deleted" if deleted.voiceprints == 1
            else f"Your {deleted.voiceprints} voiceprints are deleted")
    if deleted.enrollments:
        done = f"{done}, and the" if deleted.voiceprints else "The"
        return f"{done} enrollment you had started was cancelled by this delete: Voice ID keeps no voiceprint of you."
    if deleted.voiceprints == 0:
        return "You had no voiceprint to delete."
    return f"{done}. Recordings shared from now on will not name you."


async def deleted_one_text(services: Services, team_id: str, user_id: str, name: str,
                           deleted: VoiceDeleted) -> str:
    """The answer to `/enroll delete NAME`: that voiceprint only; the others stay, and so does their name in
    stored results (`/enroll delete` alone takes it out)."""
    if not deleted.voiceprints:
        left = [v.name for v in await list_voiceprints(services, team_id, user_id)]
        have = (f"Yours are named {', '.join(quoted(n) for n in left)}." if left
                else "You have no voiceprint.")
        text = f"You have no voiceprint named {quoted(name)}, so nothing was deleted. {have}"
    else:
        left = await list_voiceprints(services, team_id, user_id)
        text = f"Your voiceprint {quoted(name)} is deleted. " + (
            f"Your other {len(left)} stay{'s' if len(left) == 1 else ''} ({', '.join(quoted(v.name) for v in left)})."
            if left else "You have no other voiceprint, so recordings shared from now on will not name you.")
        text += " `/enroll delete` alone also takes your name out of the results Voice ID keeps."
    if deleted.enrollments:
        text += " The enrollment you had started was cancelled by this delete: start it again with `/enroll`."
    return text


def enrollment_task_name(team_id: str, user_id: str) -> str:
    return f"enroll {team_id}/{user_id}"


def cancel_enrollments(runner: LocalRunner | None, team_id: str, user_id: str) -> int:
    """Cancel this person's enrollments running in this process's runner; returns how many. (One running in
    another worker is refused at its save: the delete raised the person's deletion generation.)"""
    return runner.cancel_enrollments(team_id, user_id) if runner is not None else 0


async def voiceprint_names(services: Services, team_id: str, user_id: str) -> dict[str, datetime]:
    """The person's voiceprints for the active engine: name → when it was made (or last replaced). The modal
    offers replacing one of these; a new name needs a free place."""
    return {v.name: v.updated_at for v in await list_voiceprints(services, team_id, user_id) if v.usable}


def too_many_text(names: list[str], *, plain: bool = False) -> str:
    listed = ", ".join(quoted(n, plain=plain) for n in names)
    return (f"You already have {len(names)} voiceprints ({listed}), the most Voice ID "
            "keeps: give one of these names to replace it, or remove one with `/enroll delete` followed by its name.")


async def enroll(services: Services, cpu: CpuPool, *, team_id: str, user_id: str, clip: Path, consent_at: datetime,
                 generation: int, consent_text: str | None = None, name: str = DEFAULT_NAME) -> str:
    """Make the person's voiceprint `name` from their own `clip` and store it under their consent (its time and
    the text they ticked); returns the answer for them. `generation` is their deletion generation when they
    asked: a delete since then wins. Transient failures (engine outage) are raised for the job to retry."""
    from storage.voiceprints import EnrollmentCancelled, TooManyVoiceprints, upsert_voiceprint

    try:
        new = await voiceprint_from_path(services, cpu, clip)
    except EngineError as exc:
        if exc.transient:
            raise
        ENROLLMENTS.labels("refused").inc()
        return not_enrolled(exc.code, exc.message, user_id)
    try:
        _, replaced = await upsert_voiceprint(
            services.db, team_id=team_id, user_id=user_id, engine=services.engine.engine_id, model_id=new.model_id,
            voiceprint=new.voiceprint, consent_at=consent_at, clip_duration=new.clip_duration, generation=generation,
            consent_text=consent_text, name=name)
    except EnrollmentCancelled:
        ENROLLMENTS.labels("cancelled").inc()
        return (":warning: Your voice was not enrolled: you deleted your voiceprint with `/enroll delete` while "
                "this enrollment was running, so it was cancelled. Type `/enroll` to enroll again.")
    except TooManyVoiceprints as exc:
        ENROLLMENTS.labels("refused").inc()
        return f":warning: Your voice was not enrolled: {too_many_text(exc.names)}"
    verb = "replaced" if replaced else "saved"
    ENROLLMENTS.labels(verb).inc()
    count = len(await voiceprint_names(services, team_id, user_id))
    return (f":white_check_mark: Your voiceprint is {verb} as {quoted(name)} ({count} of at most {MAX_PER_PERSON}). "
            "From now on Voice ID can name you in recordings shared to your channels. `/enroll status` lists your "
            "voiceprints; `/enroll delete` removes them at any time.")


def not_enrolled(code: str, message: str, user_id: str) -> str:
    """The DM for a failed enrollment: the reason if the person can fix it, else a ref into the log."""
    reason = reason_logged(code, message, about=f"enrollment of {user_id}")
    return f":warning: Your voice was not enrolled: {escape(reason)}"


async def submit_enrollment(services: Services, runner: LocalRunner | None, team_id: str, user_id: str, file_id: str,
                            view_id: str | None, consent_text: str | None = None, name: str = DEFAULT_NAME) -> str:
    """Stores the enrollment of the voiceprint `name` as a job (claimed at once by this process's job runner when it has one, else
    queued for a worker) with the consent text the person ticked, and returns what to tell them meanwhile.
    Nothing biometric goes into the row."""
    from storage.enrollments import enqueue_enrollment
    from storage.voiceprints import deletion_generation

    if runner is not None and not runner.taking_work:
        runner = None  # a listener outliving its runner's stop queues the job for another worker
    job = await enqueue_enrollment(
        services.db, team_id=team_id, user_id=user_id, file_id=file_id, name=name, consent_at=utcnow(),
        consent_text=consent_text,
        generation=await deletion_generation(services.db, team_id, user_id), view_id=view_id,
        owner=runner.owner if runner else None, lease_seconds=services.settings.job_lease_seconds)
    if runner is not None:
        runner.start_enrollment(job)
    return "Creating your voiceprint… I will send you the result in a direct message."
