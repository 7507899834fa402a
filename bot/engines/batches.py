"""Identify jobs over more voiceprints than an engine takes in one (pyannoteAI: 50 per job; our engine server:
`ENGINE_MAX_VOICEPRINTS`), so that a channel with more enrolled voiceprints still works.

The voiceprints are split into batches of at most the limit and each batch is its own identify job on the same
media, all submitted at once. The jobs are followed as one: its id joins theirs (`batch:<id>,<id>,…`, kept with
the recording like any job id, so a restart resumes them all); it runs until every part is final, fails as soon
as one part fails (and a part the engine lost makes the whole one lost: it is submitted again), and its output
merges theirs (`merge_outputs`). Every voiceprint is compared in exactly one part, so nothing is lost by
splitting: each speaker's confidence map ends up holding every label, and who is named is decided afterwards,
for the whole recording and exclusively by person (`bot.services.voiceprints.by_person`).

Each part diarizes the recording again (that is the cost: with pyannoteAI each part is a billed job). Parts of
one engine on one file normally agree; in case they do not, every other part's speakers are mapped onto the
first part's by the speech time they share (one-to-one), and a speaker of another part that shares none with
any is left out (its voiceprints then name nobody there: never a guess).
"""
from __future__ import annotations

import numpy as np

from bot.schema import DiarizationSegment, IdentifyOutput, Job, JobStatus

PREFIX = "batch:"


def batches(items: list, size: int) -> list[list]:
    """`items` in order, in lists of at most `size`."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def joined_id(job_ids: list[str]) -> str:
    return PREFIX + ",".join(job_ids)


def part_ids(job_id: str) -> list[str] | None:
    """The part jobs' ids of a batched job id, or None for a plain job id."""
    return job_id[len(PREFIX):].split(",") if job_id.startswith(PREFIX) else None


def merged_job(job_id: str, parts: list[Job]) -> Job:
    """The parts as one job: failed (with that part's error) once one failed, succeeded with the merged output
    once all did, else running with their mean progress."""
    ended = next((p for p in parts if p.status in (JobStatus.failed, JobStatus.canceled)), None)
    if ended is not None:
        return Job(job_id=job_id, status=ended.status, output=ended.output, warning=ended.warning)
    if all(p.status is JobStatus.succeeded for p in parts):
        return Job(job_id=job_id, status=JobStatus.succeeded, output=merge_outputs([p.output or {} for p in parts]),
                   progress=1.0)
    progress = [1.0 if p.status is JobStatus.succeeded else (p.progress or 0.0) for p in parts]
    started = any(p.status is not JobStatus.created for p in parts)
    return Job(job_id=job_id, status=JobStatus.running if started else JobStatus.created,
               progress=round(sum(progress) / len(progress), 3))


def merge_outputs(outputs: list[dict]) -> dict:
    """The identify outputs of the parts as one: the first part's diarization, each speaker's confidence map
    the union of the parts' maps for it, its `match` the best scored among the parts' own matches (each part
    applied the threshold), the identification track relabelled to those matches."""
    first = IdentifyOutput.model_validate(outputs[0])
    confidence = {m.speaker: dict(m.confidence) for m in first.voiceprints}
    candidates = {m.speaker: [m.match] if m.match else [] for m in first.voiceprints}
    warnings = [first.warning] if first.warning else []
    for raw in outputs[1:]:
        other = IdentifyOutput.model_validate(raw)
        onto = same_speakers(first.diarization, other.diarization)
        for m in other.voiceprints:
            if (speaker := onto.get(m.speaker)) is not None:
                confidence.setdefault(speaker, {}).update(m.confidence)
                candidates.setdefault(speaker, []).extend([m.match] if m.match else [])
        if other.warning and other.warning not in warnings:
            warnings.append(other.warning)
    best = {s: max(c, key=lambda label, s=s: confidence[s].get(label, 0.0)) if c else None
            for s, c in candidates.items()}
    merged = first.wire()
    merged["voiceprints"] = [{"speaker": s, "match": best.get(s), "confidence": confidence[s]} for s in confidence]
    merged["identification"] = [{**seg.wire(), "speaker": best.get(seg.diarization_speaker) or seg.diarization_speaker,
                                 "match": best.get(seg.diarization_speaker)} for seg in first.identification]
    if warnings:
        merged["warning"] = " ".join(warnings)
    return merged


def same_speakers(reference: list[DiarizationSegment], other: list[DiarizationSegment],
                  step: float = 0.05) -> dict[str, str]:
    """Each speaker of `other` → the speaker of `reference` it shares the most speech time with (on a `step`
    second grid), one-to-one (an optimal assignment); a speaker sharing none with any is left out."""
    from bot.speech.matching import assign

    def grid(segments: list[DiarizationSegment], speakers: list[str], frames: int) -> np.ndarray:
        active = np.zeros((len(speakers), frames), np.float32)
        for seg in segments:
            active[speakers.index(seg.speaker), int(seg.start / step):int(seg.end / step)] = 1.0
        return active

    ours = sorted({s.speaker for s in reference})
    theirs = sorted({s.speaker for s in other})
    frames = int(max((s.end for s in [*reference, *other]), default=0.0) / step) + 1
    shared = grid(other, theirs, frames) @ grid(reference, ours, frames).T
    chosen = assign(np.where(shared > 0, shared, np.nan), exclusive=True).matches
    return {theirs[i]: ours[c] for i, c in enumerate(chosen) if c is not None}
