""""Is this you?": `nearmatch`, one row per person asked privately whether a recording's speaker left unknown,
whose best match fell just under the threshold, is them (its state: pending, sent, skipped, yes, no; the DM's
channel and ts). One per person and recording.

Revision ID: 0014_near_matches
Revises: 0013_voiceprint_names
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014_near_matches"
down_revision: str | None = "0013_voiceprint_names"
branch_labels: str | None = None
depends_on: str | None = None

STATES = ("pending", "sent", "skipped", "yes", "no")


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "nearmatch",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("speaker", sa.String(64), nullable=False),
        sa.Column("state", sa.Enum(*STATES, name="nearmatchstate", native_enum=False, length=16), nullable=False),
        sa.Column("dm_channel", sa.String(32), nullable=True),
        sa.Column("dm_ts", sa.String(32), nullable=True),
        _when("created_at", nullable=False),
        _when("sent_at"),
        _when("answered_at"),
        sa.UniqueConstraint("recording_id", "user_id", name="uq_nearmatch_recording_user"),
    )
    op.create_index("ix_nearmatch_recording_id", "nearmatch", ["recording_id"])
    op.create_index("ix_nearmatch_user_id", "nearmatch", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_nearmatch_user_id", table_name="nearmatch")
    op.drop_index("ix_nearmatch_recording_id", table_name="nearmatch")
    op.drop_table("nearmatch")
