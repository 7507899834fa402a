"""Transcripts in the thread (at-most-once upload markers) and chart redraws after corrections.

Revision ID: 0005_transcripts
Revises: 0004_enrollment_jobs
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005_transcripts"
down_revision: str | None = "0004_enrollment_jobs"
branch_labels: str | None = None
depends_on: str | None = None


def columns() -> list[sa.Column]:
    return [
        sa.Column("transcript_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transcript_file_id", sa.String(32), nullable=True),
        sa.Column("transcript_url", sa.String(500), nullable=True),
        sa.Column("transcript_error", sa.String(64), nullable=True),
        sa.Column("relabel_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("chart_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("chart_lock_owner", sa.String(64), nullable=True),
        sa.Column("chart_lock_until", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        for column in columns():
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        for column in reversed(columns()):
            batch.drop_column(column.name)
