"""Recordings no longer keep the file's MIME type and size: written at enqueue, never read.

Revision ID: 0008_no_file_metadata
Revises: 0007_engine_ids
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008_no_file_metadata"
down_revision: str | None = "0007_engine_ids"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        batch.drop_column("mimetype")
        batch.drop_column("size")


def downgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        batch.add_column(sa.Column("mimetype", sa.String(200), nullable=True))
        batch.add_column(sa.Column("size", sa.BigInteger(), nullable=True))
