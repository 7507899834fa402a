"""The database tables (SQLModel on SQLAlchemy) and the value types they share.

Every datetime is timezone-aware UTC in Python on both databases: `UTCDateTime` stores
`TIMESTAMP WITH TIME ZONE` on PostgreSQL and a naive UTC text on SQLite, and gives back aware values.

Recording status machine (one row per Slack file, unique per team):

    queued ──claim──▶ running ──complete──▶ succeeded ──mark_posted──▶ posted
      ▲                 │  │                   │
      └──fail(retry)────┘  └──fail(final)──▶ failed ◀──fail(final)──┘

    posted, failed (shown, result retained) ──requeue_identify ("Identify again")──▶ queued

- `queued`: waiting for a worker; `claim_next` moves it to `running` and counts an attempt.
- `running`: a worker holds the lease (`lease_owner`, `lease_expires_at`) and keeps it alive with
  heartbeats; an expired lease sends it back to `queued`, or to `failed` (`lease_expired`) when the
  attempts are used up.
- `succeeded`: the result is stored but the summary is not posted yet. The worker that completed it
  keeps its lease to post; if it dies, the expired lease is cleared and any worker may claim it to post.
- `posted`: the summary is in Slack; only the result (and relabels) remain.
- `failed`: final, with `error_code` and `error_message` fit to show a person. The failing worker keeps
  its lease to show the failure in the thread; until `notified_at` is set, an expired or released
  failed row is claimable again, only to show that failure.

Exactly-once bookkeeping: `engine_job_id` + `engine_deadline_at` (a resumed engine job keeps its deadline),
`reply_ts` (the one threaded bot message, edited in place: the summary's record, kept on the row because
intake, `mark_posted` and "Identify again" decide on it with the status) and `notified_at` (the outcome,
summary or failure, is in Slack).

Thread outputs (`RecordingOutput`, one row per recording and kind, each written by its one owner through
`storage.thread`):
- the chart (`bot.jobs.chart_step`, `bot.services.charts`): `started_at` is set under the lease before the
  chart upload (a takeover never uploads a second chart), then `file_id` and `seq` (see chart redraws below);
- the transcript (`bot.jobs.transcript_step`, after the summary is shown, still `succeeded` under the same
  lease): the recognised words are stored inside the recording's `result` (so retention and uninstall clear
  them), `started_at` is set under the lease right before the one upload of the `.md`/`.vtt` files (a takeover
  never uploads a second one), then `file_id`/`url` or `error` (a ref for the log) record how it ended.

Intake: the listener stores the row before Slack's event is acknowledged; the progress reply is posted by the
job runner (`announce_tries`, `announce_until`: one poster at a time, at most once via the reply's metadata).
A Slack Connect file is stored with `file_checked` false until `files.info` says it is audio or video (else
its row is deleted unshown).

Nobody enrolled: the job runs a diarize-only engine job and sets `diarize_only` (speakers are numbered).
Speaker-count hint: `min_speakers`/`max_speakers` (from the sharing message, or set with "Identify again") go to
the engine with each job on the row; the result stores the hint it was made with (`speakerHint`).
"Identify again" (`requeue_identify`) sends a `posted` (or re-run `failed`) recording whose result is still
retained back to `queued` with its attempts reset and a new `queued_at` (behind the recordings already
waiting), keeping `reply_ts`/`posted_ts`, the chart and the transcript, so the same summary message is edited in place;
`complete` then replaces the result, clears the relabels (they named speakers of the old result) and raises
`relabel_seq`, so the chart is redrawn once. `finished_at` keeps the first run's time: identifying again never
extends retention. Cooldowns: a recording may run again only a while after its last re-run was shown
(`reidentified_at` set, `notified_at` + cooldown), a person only a while after their last accepted press
(`ReidentifyPress`).

Chart redraws after a correction: every relabel raises the recording's `relabel_seq`; the chart in Slack was
drawn at its output's `seq`. One redrawer at a time holds the chart's `lock_owner` until `lock_until` and
redraws until the two are equal, so racing corrections end with exactly one chart showing the latest names.
"""
from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from storage.crypto import Sealed, SealedJSON, SealedString

VOICEPRINT_NAME_MAX = 24  # characters of the name a person gives a voiceprint


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes on both databases; a naive datetime is refused rather than guessed at."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json() -> sa.JSON:
    """JSON where Python None is SQL NULL, so `IS NULL` finds cleared results."""
    return sa.JSON(none_as_null=True)


def _when(*, nullable: bool = False, index: bool = False, default: bool = False) -> Any:
    """A UTC timestamp column; `default=True` fills it with the current time on insert."""
    kwargs: dict[str, Any] = {"default_factory": utcnow} if default else {"default": None}
    return Field(sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index), **kwargs)


class RecordingStatus(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    posted = "posted"
    failed = "failed"

    @property
    def final(self) -> bool:
        return self in (RecordingStatus.posted, RecordingStatus.failed)


class AuditAction(str, Enum):
    enroll = "enroll"
    replace = "replace"
    delete = "delete"
    claim = "claim"
    unclaim = "unclaim"
    purge = "purge"
    reidentify = "reidentify"
    uninstall = "uninstall"
    erase = "erase"  # a person's data deleted on request (`/enroll delete`, an admin, `python -m bot people delete`)


def _enum_column(enum: type[Enum], name: str, *, index: bool = False) -> sa.Column:
    """A VARCHAR holding an enum's values (no native PostgreSQL type, so adding a value needs no DDL)."""
    return sa.Column(
        sa.Enum(enum, name=name, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e],
                validate_strings=True),
        nullable=False, index=index,
    )


class Workspace(SQLModel, table=True):
    """One Slack installation (a workspace, or an org for an enterprise-wide install).

    `install_key` makes (enterprise, team) unique even where one of them is NULL; see `workspaces.install_key`.
    Tokens never appear in `repr()` and are encrypted at rest (`storage.crypto`).
    """

    __table_args__ = (sa.UniqueConstraint("install_key", name="uq_workspace_install_key"),)

    id: int | None = Field(default=None, primary_key=True)
    install_key: str = Field(max_length=80)
    team_id: str | None = Field(default=None, max_length=32, index=True)
    enterprise_id: str | None = Field(default=None, max_length=32)
    bot_user_id: str | None = Field(default=None, max_length=32)
    bot_id: str | None = Field(default=None, max_length=32)
    bot_token: str | None = Field(default=None, sa_column=sa.Column(SealedString(512), nullable=True), repr=False)
    bot_refresh_token: str | None = Field(default=None, sa_column=sa.Column(SealedString(512), nullable=True),
                                          repr=False)
    bot_token_expires_at: datetime | None = _when(nullable=True)
    bot_scopes: str | None = Field(default=None, max_length=2000)
    installer_user_id: str | None = Field(default=None, max_length=32)
    is_enterprise_install: bool = Field(default=False)
    installed_at: datetime = _when(default=True)
    uninstalled_at: datetime | None = _when(nullable=True)


class OAuthState(SQLModel, table=True):
    """A one-time `state` for Slack's OAuth redirect (CSRF protection)."""

    __table_args__ = (sa.UniqueConstraint("state", name="uq_oauthstate_state"),)

    id: int | None = Field(default=None, primary_key=True)
    state: str = Field(max_length=128)
    expires_at: datetime = _when(index=True)


class Voiceprint(SQLModel, table=True):
    """One of a person's voiceprints for one engine (at most `storage.voiceprints.MAX_PER_PERSON`, each under a
    name the person gives it: "headset", "phone"). Biometric data: encrypted at rest, only deleted for real. `label` is what engines
    see instead of the person: random, never reused, mapped back to `user_id` by Voice ID alone."""

    __table_args__ = (
        sa.UniqueConstraint("team_id", "user_id", "engine", "name", name="uq_voiceprint_team_user_engine_name"),
        sa.UniqueConstraint("label", name="uq_voiceprint_label"),
    )

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32)
    user_id: str = Field(max_length=32)
    engine: str = Field(max_length=32)
    name: str = Field(default="default", sa_column=sa.Column(sa.String(VOICEPRINT_NAME_MAX), nullable=False,
                                                             server_default="default"))
    label: str = Field(max_length=32)
    model_id: str = Field(max_length=200)
    voiceprint: str = Field(sa_column=sa.Column(Sealed(), nullable=False), repr=False)
    consent_at: datetime = _when()
    # What the person ticked, as the modal showed it (None: enrolled before the text was stored).
    consent_text: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    clip_duration: float
    created_at: datetime = _when(default=True)
    updated_at: datetime = _when(default=True)


class DeletionGeneration(SQLModel, table=True):
    """How many times a person deleted their voiceprints: an enrollment remembers the number when it starts
    and may only store its voiceprint while the number is unchanged, so `/enroll delete` wins over an
    enrollment still running in any process. Holds no biometric data."""

    __table_args__ = (sa.UniqueConstraint("team_id", "user_id", name="uq_deletiongeneration_team_user"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32)
    user_id: str = Field(max_length=32)
    generation: int = Field(default=0)
    updated_at: datetime = _when(default=True)


class Recording(SQLModel, table=True):
    """A Slack file to diarize and identify, with its job state; see the status machine above.

    Meeting content is encrypted at rest (`storage.crypto`): the result (with the transcript's words), the
    relabels and the file name. The chart and the transcript in its thread are `RecordingOutput` rows."""

    __table_args__ = (
        sa.UniqueConstraint("team_id", "file_id", name="uq_recording_team_file"),
        sa.Index("ix_recording_status_queued", "status", "queued_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    file_id: str = Field(max_length=32)
    file_name: str = Field(sa_column=sa.Column(Sealed(), nullable=False))  # names meetings and people
    duration: float | None = None
    uploader_id: str | None = Field(default=None, max_length=32)
    message_ts: str | None = Field(default=None, max_length=32)
    thread_ts: str | None = Field(default=None, max_length=32)
    status: RecordingStatus = Field(default=RecordingStatus.queued,
                                    sa_column=_enum_column(RecordingStatus, "recordingstatus"))
    engine: str = Field(max_length=32)
    # One engine job, or several joined (an identify split into batches of voiceprints: `bot.engines.batches`).
    engine_job_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    attempts: int = Field(default=0)
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = _when(nullable=True)
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    result: dict | None = Field(default=None, sa_column=sa.Column(SealedJSON(), nullable=True))  # every word
    relabels: dict | None = Field(default=None, sa_column=sa.Column(SealedJSON(), nullable=True))  # who spoke
    reply_ts: str | None = Field(default=None, max_length=32)
    posted_ts: str | None = Field(default=None, max_length=32)
    engine_deadline_at: datetime | None = _when(nullable=True)
    notified_at: datetime | None = _when(nullable=True)
    relabel_seq: int = Field(default=0)  # raised by every correction (and a new result): the chart follows it
    # The result is a diarize-only one (nobody in the channel had enrolled): speakers are numbered, not unknown.
    diarize_only: bool = Field(default=False, sa_column=sa.Column(sa.Boolean(), nullable=False,
                                                                  server_default=sa.false()))
    created_at: datetime = _when(default=True)
    updated_at: datetime = _when(default=True)
    finished_at: datetime | None = _when(nullable=True, index=True)
    not_before: datetime | None = _when(nullable=True)  # a queued retry waits until then (backoff)
    # Its place in the queue: when it was shared, and again at each "Identify again" (a re-run waits its turn).
    queued_at: datetime = _when(default=True)
    reidentified_at: datetime | None = _when(nullable=True)  # the last accepted "Identify again" (its cooldown)
    # Intake (see `storage.thread.claim_announcement`): false while a Slack Connect file waits for files.info to
    # say what it is; the progress reply's posting tries, and the time until which one poster holds it.
    file_checked: bool = Field(default=True, sa_column=sa.Column(sa.Boolean(), nullable=False,
                                                                 server_default=sa.true()))
    announce_tries: int = Field(default=0, sa_column=sa.Column(sa.Integer(), nullable=False, server_default="0"))
    announce_until: datetime | None = _when(nullable=True)
    # How many people speak, when someone said so: the sharing message ("3 speakers") or the person who pressed
    # "Identify again" (`speakers_from`: "message" or "identify_again"); equal counts are an exact number.
    min_speakers: int | None = None
    max_speakers: int | None = None
    speakers_from: str | None = Field(default=None, max_length=16)

    @property
    def state(self) -> RecordingStatus:
        """The status as the enum, whichever way the row was built."""
        return RecordingStatus(self.status)


class OutputKind(str, Enum):
    chart = "chart"
    transcript = "transcript"


class RecordingOutput(SQLModel, table=True):
    """One upload the bot made into a recording's thread besides its reply (the timeline chart, the transcript),
    with its at-most-once record; one row per recording and kind, written only through `storage.thread` by its
    one owner. `url` is the transcript's link, encrypted at rest (Slack's permalink carries the file name)."""

    __tablename__ = "recordingoutput"
    __table_args__ = (sa.UniqueConstraint("recording_id", "kind", name="uq_recordingoutput_recording_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    recording_id: int = Field(sa_column=sa.Column(sa.Integer(), sa.ForeignKey("recording.id", ondelete="CASCADE"),
                                                  nullable=False))
    kind: OutputKind = Field(sa_column=_enum_column(OutputKind, "outputkind"))
    started_at: datetime | None = _when(nullable=True)  # the upload begun, under the recording's lease
    file_id: str | None = Field(default=None, max_length=32)
    url: str | None = Field(default=None, sa_column=sa.Column(Sealed(), nullable=True))  # has the file name
    error: str | None = Field(default=None, max_length=64)  # a ref for the log, shown instead of the link
    seq: int = Field(default=0)  # the chart shows the recording's relabels as of this `relabel_seq`
    lock_owner: str | None = Field(default=None, max_length=64)  # the chart's one redrawer …
    lock_until: datetime | None = _when(nullable=True)  # … until then
    created_at: datetime = _when(default=True)
    updated_at: datetime = _when(default=True)


class ReidentifyPress(SQLModel, table=True):
    """When a person last started an "Identify again" in a workspace, for the per-person cooldown (one row per
    person, overwritten by each accepted press)."""

    __tablename__ = "reidentifypress"
    __table_args__ = (sa.UniqueConstraint("team_id", "user_id", name="uq_reidentifypress_team_user"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32)
    user_id: str = Field(max_length=32)
    pressed_at: datetime = _when()


class NearMatchState(str, Enum):
    pending = "pending"  # stored, DM not sent yet
    sent = "sent"  # marked before the DM is sent (at most once), then the DM's ts stored
    skipped = "skipped"  # not asked: no longer a member of the channel, or the DM failed
    yes = "yes"  # "Yes, that's me": claimed the speaker
    no = "no"  # "No": remembered, never asked about this recording again


class NearMatch(SQLModel, table=True):
    """"Is this you?": a speaker of a recording left unknown whose best match (this person) fell just under the
    threshold. Only the person is asked, by DM (`bot.services.asking`); one question per person and recording,
    ever (a "No" stays; an unanswered question goes when the recording is identified again). Holds no
    confidence, nothing biometric: ids, the speaker's label, the question's state and its DM."""

    __tablename__ = "nearmatch"
    __table_args__ = (sa.UniqueConstraint("recording_id", "user_id", name="uq_nearmatch_recording_user"),)

    id: int | None = Field(default=None, primary_key=True)
    recording_id: int = Field(index=True)
    team_id: str = Field(max_length=32)
    user_id: str = Field(max_length=32, index=True)
    speaker: str = Field(max_length=64)
    state: NearMatchState = Field(default=NearMatchState.pending, sa_column=_enum_column(NearMatchState, "nearmatchstate"))
    dm_channel: str | None = Field(default=None, max_length=32)
    dm_ts: str | None = Field(default=None, max_length=32)
    created_at: datetime = _when(default=True)
    sent_at: datetime | None = _when(nullable=True)
    answered_at: datetime | None = _when(nullable=True)


class EnrollmentStatus(str, Enum):
    queued = "queued"
    running = "running"


class EnrollmentJob(SQLModel, table=True):
    """One submitted `/enroll` waiting for or holding a worker, with the same lease machinery as recordings
    (`storage.leases`). Holds no biometric data: the clip is fetched from Slack by its file id when the job
    runs. `answer` is the message for the person once the outcome is known, so a failed or interrupted send
    is retried without making the voiceprint again. The row is deleted once the person has their answer (or
    when `/enroll delete` cancels it queued)."""

    __tablename__ = "enrollmentjob"
    __table_args__ = (sa.Index("ix_enrollmentjob_status_created", "status", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32)
    user_id: str = Field(max_length=32, index=True)
    file_id: str = Field(max_length=32)
    name: str = Field(default="default", sa_column=sa.Column(sa.String(VOICEPRINT_NAME_MAX), nullable=False,
                                                             server_default="default"))  # the voiceprint's
    view_id: str | None = Field(default=None, max_length=64)
    consent_at: datetime = _when()
    consent_text: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    generation: int  # the person's deletion generation at submission: a delete since then wins
    status: EnrollmentStatus = Field(default=EnrollmentStatus.queued,
                                     sa_column=_enum_column(EnrollmentStatus, "enrollmentstatus"))
    attempts: int = Field(default=0)
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = _when(nullable=True)
    not_before: datetime | None = _when(nullable=True)
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    answer: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))  # kept until sent
    created_at: datetime = _when(default=True)
    updated_at: datetime = _when(default=True)


class AuditEvent(SQLModel, table=True):
    """Who did what to which voiceprint or recording, and when. `actor_id` None means the system itself."""

    __tablename__ = "auditevent"

    id: int | None = Field(default=None, primary_key=True)
    team_id: str | None = Field(default=None, max_length=32, index=True)
    actor_id: str | None = Field(default=None, max_length=32)
    action: AuditAction = Field(sa_column=_enum_column(AuditAction, "auditaction"))
    target_type: str = Field(max_length=32)
    target_id: str | None = Field(default=None, max_length=200)
    detail: dict | None = Field(default=None, sa_column=sa.Column(_json(), nullable=True))
    created_at: datetime = _when(default=True, index=True)


metadata = SQLModel.metadata
