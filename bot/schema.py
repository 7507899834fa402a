"""The pyannoteAI job and output schema: the shared language of engines, jobs, storage and summaries.

Field names follow the pyannoteAI web API exactly (camelCase on the wire) so that a result from the
cloud, from our engine server and from the embedded engine can be stored and rendered the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)


class _Wire(BaseModel):
    """Serialises with the API's camelCase names; accepts both spellings on input."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    def wire(self) -> dict:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class JobStatus(str, Enum):
    pending = "pending"
    created = "created"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    @property
    def final(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.canceled)


Label = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class VoiceprintInput(_Wire):
    label: Label
    voiceprint: Annotated[str, StringConstraints(min_length=1, max_length=20000)]

    @field_validator("label")
    @classmethod
    def _not_speaker(cls, v: str) -> str:
        if v.lower().startswith("speaker_"):
            raise ValueError("a label must not start with SPEAKER_ (reserved for diarization labels)")
        return v


class Matching(_Wire):
    exclusive: bool = True
    threshold: float = Field(default=0.0, ge=0, le=100)


class VoiceprintRequest(_Wire):
    url: str
    model: str | None = None
    webhook: str | None = None
    webhook_status_only: bool = Field(default=False, alias="webhookStatusOnly")


class DiarizeRequest(_Wire):
    """`POST /v1/diarize`: who spoke when, no voiceprints needed (a recording where nobody is enrolled)."""

    url: str
    num_speakers: int | None = Field(default=None, ge=1, alias="numSpeakers")
    min_speakers: int | None = Field(default=None, ge=1, alias="minSpeakers")
    max_speakers: int | None = Field(default=None, ge=1, alias="maxSpeakers")
    exclusive: bool = False  # also return `exclusiveDiarization` (one speaker at a time)
    # Also return `turnLevelTranscription` / `wordLevelTranscription` (and `exclusiveDiarization`). pyannoteAI
    # takes it on diarize jobs only; our engine server on identify jobs too.
    transcription: bool = False
    model: str | None = None
    webhook: str | None = None
    webhook_status_only: bool = Field(default=False, alias="webhookStatusOnly")

    @model_validator(mode="after")
    def _check_counts(self):
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise ValueError("minSpeakers must not exceed maxSpeakers")
        return self

    def wire(self) -> dict:
        d = super().wire()
        if not self.transcription:  # sent only when asked: an engine without it never sees the field
            d.pop("transcription", None)
        return d


# pyannoteAI takes at most this many voiceprints in one identify job; our engine server as many as
# ENGINE_MAX_VOICEPRINTS says (this by default). The request itself has no upper bound: the embedded engine takes
# any number, and the HTTP client splits larger sets into several jobs (`bot.engines.batches`).
MAX_VOICEPRINTS_PER_JOB = 50


class IdentifyRequest(DiarizeRequest):
    voiceprints: list[VoiceprintInput] = Field(min_length=1)
    matching: Matching = Field(default_factory=Matching)

    @field_validator("voiceprints")
    @classmethod
    def _at_most(cls, v: list[VoiceprintInput], info: ValidationInfo) -> list[VoiceprintInput]:
        """A server's own limit, given as validation context (the engine server's ENGINE_MAX_VOICEPRINTS)."""
        most = (info.context or {}).get("max_voiceprints")
        if most is not None and len(v) > most:
            raise ValueError(f"at most {most} voiceprints per identify job: split them into several jobs")
        return v

    @model_validator(mode="after")
    def _check(self) -> IdentifyRequest:
        labels = [v.label for v in self.voiceprints]
        if len(set(labels)) != len(labels):
            raise ValueError("voiceprint labels must be unique")
        return self


@dataclass(frozen=True)
class SpeakerTurn:
    """One speaker's turn, in memory: what the summary's statistics, the chart and the transcript's attribution
    of words share. `DiarizationSegment` is its wire form."""

    speaker: str
    start: float
    end: float


class DiarizationSegment(_Wire):
    speaker: str
    start: float
    end: float


class IdentificationSegment(_Wire):
    speaker: str
    start: float
    end: float
    diarization_speaker: str = Field(alias="diarizationSpeaker")
    match: str | None = None

    def wire(self) -> dict:
        d = super().wire()
        d.setdefault("match", None)
        return d


class SpeakerMatch(_Wire):
    """One diarized speaker against every voiceprint: `confidence` maps label → 0–100."""

    speaker: str
    match: str | None = None
    confidence: dict[str, float] = Field(default_factory=dict)

    def wire(self) -> dict:
        d = super().wire()
        d.setdefault("match", None)
        return d


class VoiceprintOutput(_Wire):
    voiceprint: str
    warning: str | None = None


class TranscriptionSegment(_Wire):
    """One word or one speaker turn of `wordLevelTranscription` / `turnLevelTranscription`."""

    speaker: str | None = None
    start: float
    end: float
    text: str


class Provenance(_Wire):
    """Which engine made a result, with which models, at which threshold: our field, not pyannoteAI's (its
    outputs carry none). The embedded engine (also inside our engine server) reports `pipeline`, `models` and
    the `threshold` it applied; the bot adds `engine` and `name` and, for an engine that reports none, the
    threshold it sent (`bot.engines.base.with_provenance`)."""

    engine: str | None = None  # the engine id: local, pyannoteai, server
    name: str | None = None  # the engine's name for people
    pipeline: str | None = None  # the embedded engine's diarization pipeline (v3, v2; v1 before it left)
    models: str | None = None  # e.g. "segmentation-3.0 + CAM++", or the model pyannoteAI reports
    threshold: float | None = None  # the matching threshold (None: nobody was compared, a diarize-only job)


class DiarizeOutput(_Wire):
    diarization: list[DiarizationSegment] = Field(default_factory=list)
    # One speaker at a time (for aligning a transcript), when the request asks `exclusive`, as pyannoteAI does.
    exclusive_diarization: list[DiarizationSegment] | None = Field(default=None, alias="exclusiveDiarization")
    warning: str | None = None
    duration: float | None = None
    turn_level_transcription: list[TranscriptionSegment] | None = Field(default=None, alias="turnLevelTranscription")
    word_level_transcription: list[TranscriptionSegment] | None = Field(default=None, alias="wordLevelTranscription")
    provenance: Provenance | None = None


class IdentifyOutput(DiarizeOutput):
    identification: list[IdentificationSegment] = Field(default_factory=list)
    voiceprints: list[SpeakerMatch] = Field(default_factory=list)

    def wire(self) -> dict:
        d = super().wire()
        d["identification"] = [s.wire() for s in self.identification]
        d["voiceprints"] = [s.wire() for s in self.voiceprints]
        return d


class JobError(_Wire):
    code: str
    message: str


def utcnow() -> datetime:
    return datetime.now(UTC)


class Job(_Wire):
    """A job as `GET /v1/jobs/{id}` returns it; `output` is a voiceprint or identify output."""

    job_id: str = Field(alias="jobId")
    status: JobStatus
    created_at: datetime = Field(default_factory=utcnow, alias="createdAt")
    updated_at: datetime = Field(default_factory=utcnow, alias="updatedAt")
    output: dict | None = None
    progress: float | None = None
    warning: str | None = None

    @property
    def error(self) -> JobError | None:
        err = (self.output or {}).get("error")
        if isinstance(err, dict):
            return JobError.model_validate(err)
        if isinstance(err, str):
            return JobError(code="failed", message=err)
        return None

    def voiceprint_output(self) -> VoiceprintOutput:
        return VoiceprintOutput.model_validate(self.output or {})

    def identify_output(self) -> IdentifyOutput:
        return IdentifyOutput.model_validate(self.output or {})

    def diarize_output(self) -> DiarizeOutput:
        return DiarizeOutput.model_validate(self.output or {})
