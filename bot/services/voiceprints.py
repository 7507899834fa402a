"""Voiceprints through the engines: making one from the person's own clip (`/enroll`), listing a person's,
sending a channel's to an identify job under their labels, and reading the answer back per person.

Engines see a voiceprint only under its random label (`storage.voiceprints.new_label`), never a person's Slack
id or name, and each of a person's voiceprints is its own label. The answer comes back per label; `by_person`
turns it into the answer per person before anything is stored or shown: a speaker's confidence for a person is
its best over that person's voiceprints, and matching is exclusive by person, so a person with a headset and a
phone voiceprint is still named at most once per recording; a speaker that fits two people is named as nobody.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from bot.engines.factory import engine_name
from bot.errors import error_from
from bot.pools import CpuPool
from bot.schema import (
    IdentificationSegment,
    IdentifyOutput,
    JobStatus,
    SpeakerMatch,
    VoiceprintInput,
    VoiceprintRequest,
)
from bot.services.context import Services
from bot.speech import matching

# A voiceprint job on a 30 s clip takes well under a second warm; allow for a cold model load.
VOICEPRINT_TIMEOUT = 300.0


@dataclass(frozen=True)
class NewVoiceprint:
    voiceprint: str
    model_id: str
    clip_duration: float


async def voiceprint_from_path(services: Services, cpu: CpuPool, path: Path) -> NewVoiceprint:
    """Run a voiceprint job; a refused clip raises the typed error of the engine's code (`bot.errors`). The
    clip's length is read in `cpu` when the engine does not say it."""
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
    duration = float(out.get("duration") or 0.0) or await cpu.run(clip_seconds, path)
    return NewVoiceprint(voiceprint=job.voiceprint_output().voiceprint,
                         model_id=str(out.get("model") or out.get("modelId") or getattr(engine, "model_id", engine.name)),
                         clip_duration=duration)


def clip_seconds(path: Path) -> float:
    """How long the (already accepted, at most 30 s) clip is; kept with the voiceprint for `/enroll status`."""
    from bot.speech.audio import decode

    return decode(path, name="The clip").duration


@dataclass(frozen=True)
class VoiceprintInfo:
    """One of a person's voiceprints as they may see it (never the voiceprint itself): for `/enroll status`
    and the App Home."""

    name: str
    created_at: datetime
    updated_at: datetime
    consent_at: datetime
    consent_text: str | None  # None: enrolled before Voice ID stored the text
    engine: str  # the engine id it was made with (`local`, `pyannoteai`, `server`)
    engine_name: str  # the same, for people
    clip_duration: float
    usable: bool  # made with the engine Voice ID uses now (only those can name the person)


async def list_voiceprints(services: Services, team_id: str, user_id: str) -> list[VoiceprintInfo]:
    """The person's voiceprints, every engine's, oldest first."""
    from storage.voiceprints import list_voiceprints as stored

    return [VoiceprintInfo(name=v.name, created_at=v.created_at, updated_at=v.updated_at, consent_at=v.consent_at,
                           consent_text=v.consent_text, engine=v.engine, engine_name=engine_name(v.engine),
                           clip_duration=v.clip_duration, usable=v.engine == services.engine.engine_id)
            for v in await stored(services.db, team_id, user_id)]


async def channel_voiceprints(services: Services, team_id: str, members: list[str]) -> list[VoiceprintInput]:
    """Every voiceprint these people made with the active engine, under its label. However many: an engine
    that takes fewer per identify job splits them into several (`bot.engines.batches`)."""
    from storage.voiceprints import voiceprints_for_users

    rows = await voiceprints_for_users(services.db, team_id, members, services.engine.engine_id)
    return [VoiceprintInput(label=r.label, voiceprint=r.voiceprint) for r in rows]


async def named_by_person(services: Services, team_id: str, output: dict | None) -> dict | None:
    """An identify job's output, labels → people (see `by_person`), as Voice ID stores it."""
    from storage.voiceprints import owners_of_labels

    if not output:
        return output
    labels = {label for m in output.get("voiceprints") or [] for label in [m.get("match"), *(m.get("confidence") or {})]}
    labels |= {seg.get("match") for seg in output.get("identification") or []}
    return by_person(output, await owners_of_labels(services.db, team_id, labels - {None}), services.threshold)


TRANSCRIPTS = ("turnLevelTranscription", "wordLevelTranscription")


def by_person(output: dict, owners: dict[str, str], threshold: float) -> dict:
    """An identify output keyed by voiceprint labels → the same output keyed by people (`owners`: label →
    user id). A speaker's confidence for a person is its best over that person's voiceprints; matching is
    exclusive by person (an optimal one-to-one assignment, then `threshold`), so nobody is named twice, and a
    speaker whose voice also matches another person left without a speaker is named as nobody (a guess between
    them: `matching.unambiguous`). A label
    with no owner (a voiceprint deleted since the job began) counts for nobody. An engine's own transcript
    segments are left out: they are keyed by labels, and Voice ID makes its own transcript. A diarize-only
    output passes unchanged."""
    if "voiceprints" not in output and "identification" not in output:
        return output
    out = IdentifyOutput.model_validate(output)
    scores = {m.speaker: dict(m.confidence) for m in out.voiceprints}
    for m in out.voiceprints:  # a match without a score (an engine without confidence maps) just passes
        if m.match:
            scores[m.speaker].setdefault(m.match, threshold)
    if not out.voiceprints:
        for seg in out.identification:
            if seg.match:
                scores.setdefault(seg.diarization_speaker, {}).setdefault(seg.match, threshold)
    speakers = list(dict.fromkeys([m.speaker for m in out.voiceprints]
                                  + [seg.diarization_speaker for seg in out.identification]))
    labels = sorted(owners)
    people = sorted(set(owners.values()))
    per_label = np.full((len(speakers), len(labels)), np.nan)
    for i, speaker in enumerate(speakers):
        for j, label in enumerate(labels):
            per_label[i, j] = scores.get(speaker, {}).get(label, np.nan)
    best = matching.best_per_group(per_label, [people.index(owners[label]) for label in labels], len(people))
    chosen = matching.unambiguous(best, matching.assign(best, threshold, exclusive=True).matches, threshold)
    named = {speaker: people[c] if c is not None else None for speaker, c in zip(speakers, chosen)}
    result = {k: v for k, v in output.items() if k not in TRANSCRIPTS}
    result["voiceprints"] = [SpeakerMatch(speaker=speaker, match=named[speaker], confidence={
        person: float(best[i, j]) for j, person in enumerate(people) if not np.isnan(best[i, j])}).wire()
        for i, speaker in enumerate(speakers)]
    result["identification"] = [IdentificationSegment(
        speaker=named[seg.diarization_speaker] or seg.diarization_speaker, start=seg.start, end=seg.end,
        diarization_speaker=seg.diarization_speaker, match=named[seg.diarization_speaker]).wire()
        for seg in out.identification]
    return result
