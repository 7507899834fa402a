"""A recording's thread outputs get a table of their own: `recordingoutput`, one row per recording and kind
(`chart`, `transcript`) with its at-most-once record (upload begun, file id, link, error, the relabel the chart
shows, the chart's redraw lock). The chart and transcript columns of `recording` are copied into it (the link as
stored: sealed values stay sealed) and dropped; `relabel_seq`, `reply_ts` and `posted_ts` stay on the recording.

Revision ID: 0016_recording_outputs
Revises: 0015_speaker_hints
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0016_recording_outputs"
down_revision: str | None = "0015_speaker_hints"
branch_labels: str | None = None
depends_on: str | None = None

KINDS = ("chart", "transcript")
# output column: its recording column, per kind (the columns dropped from `recording`, in their old order)
CHART = {"file_id": "chart_file_id", "started_at": "chart_started_at", "seq": "chart_seq",
         "lock_owner": "chart_lock_owner", "lock_until": "chart_lock_until"}
TRANSCRIPT = {"started_at": "transcript_started_at", "file_id": "transcript_file_id", "url": "transcript_url",
              "error": "transcript_error"}


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _old_columns() -> list[sa.Column]:
    return [
        sa.Column("chart_file_id", sa.String(32), nullable=True),
        _when("chart_started_at"),
        _when("transcript_started_at"),
        sa.Column("transcript_file_id", sa.String(32), nullable=True),
        sa.Column("transcript_url", sa.Text(), nullable=True),
        sa.Column("transcript_error", sa.String(64), nullable=True),
        sa.Column("chart_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("chart_lock_owner", sa.String(64), nullable=True),
        _when("chart_lock_until"),
    ]


def _create_table() -> None:
    op.create_table(
        "recordingoutput",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("recording_id", sa.Integer(), sa.ForeignKey("recording.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.Enum(*KINDS, name="outputkind", native_enum=False, length=16), nullable=False),
        _when("started_at"),
        sa.Column("file_id", sa.String(32), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("error", sa.String(64), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lock_owner", sa.String(64), nullable=True),
        _when("lock_until"),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
        sa.UniqueConstraint("recording_id", "kind", name="uq_recordingoutput_recording_kind"),
    )


# SQLite's batch mode drops and recreates `recording`, and dropping it would delete the rows referring to it
# (the foreign key cascades), so the values wait in a plain copy while the other table changes.
STAGED = "_recordingoutput_staged"


def upgrade() -> None:
    old = ", ".join(c.name for c in _old_columns())
    op.execute(f"CREATE TABLE {STAGED} AS SELECT id, updated_at, {old} FROM recording")
    with op.batch_alter_table("recording") as batch:
        for column in reversed(_old_columns()):
            batch.drop_column(column.name)
    _create_table()
    for kind, columns in (("chart", CHART), ("transcript", TRANSCRIPT)):
        begun = " OR ".join(f"{old} IS NOT NULL" for name, old in columns.items() if name != "seq")
        op.execute(f"INSERT INTO recordingoutput (recording_id, kind, {', '.join(columns)}, created_at, updated_at) "
                   f"SELECT id, '{kind}', {', '.join(columns.values())}, updated_at, updated_at FROM {STAGED} "
                   f"WHERE {begun}")
    op.execute(f"DROP TABLE {STAGED}")


def downgrade() -> None:
    op.execute(f"CREATE TABLE {STAGED} AS SELECT * FROM recordingoutput")
    op.drop_table("recordingoutput")
    with op.batch_alter_table("recording") as batch:
        for column in _old_columns():
            batch.add_column(column)
    for kind, columns in (("chart", CHART), ("transcript", TRANSCRIPT)):
        for name, old in columns.items():
            op.execute(f"UPDATE recording SET {old} = (SELECT o.{name} FROM {STAGED} o WHERE o.recording_id = "
                       f"recording.id AND o.kind = '{kind}') WHERE id IN (SELECT recording_id FROM {STAGED} "
                       f"WHERE kind = '{kind}')")
    op.execute(f"DROP TABLE {STAGED}")
