"""Summaries for channels where nobody is enrolled: a recording remembers that its result is a diarize-only one.

Revision ID: 0006_diarize_only
Revises: 0005_transcripts
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006_diarize_only"
down_revision: str | None = "0005_transcripts"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        batch.add_column(sa.Column("diarize_only", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        batch.drop_column("diarize_only")
