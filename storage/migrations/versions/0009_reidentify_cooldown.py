""""Identify again" cooldowns and a fair place in the queue: a recording's `queued_at` (the queue orders by it,
so a re-run waits behind recordings already waiting), `reidentified_at` (its last re-run, for the per-recording
cooldown), and `reidentifypress` (each person's last accepted press, for the per-person cooldown).

Revision ID: 0009_reidentify_cooldown
Revises: 0008_no_file_metadata
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009_reidentify_cooldown"
down_revision: str | None = "0008_no_file_metadata"
branch_labels: str | None = None
depends_on: str | None = None


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        batch.add_column(_when("queued_at"))
        batch.add_column(_when("reidentified_at"))
    op.execute("UPDATE recording SET queued_at = created_at")
    with op.batch_alter_table("recording") as batch:
        batch.alter_column("queued_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.drop_index("ix_recording_status_created", table_name="recording")
    op.create_index("ix_recording_status_queued", "recording", ["status", "queued_at"])
    op.create_table(
        "reidentifypress",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        _when("pressed_at", nullable=False),
        sa.UniqueConstraint("team_id", "user_id", name="uq_reidentifypress_team_user"),
    )


def downgrade() -> None:
    op.drop_table("reidentifypress")
    op.drop_index("ix_recording_status_queued", table_name="recording")
    op.create_index("ix_recording_status_created", "recording", ["status", "created_at"])
    with op.batch_alter_table("recording") as batch:
        batch.drop_column("reidentified_at")
        batch.drop_column("queued_at")
