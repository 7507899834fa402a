"""Intake: the listener stores a shared file before Slack's event is acknowledged, and the job side posts its
progress reply. `file_checked` is false for a Slack Connect file stored before Slack said what it is;
`announce_tries` and `announce_until` count and hold the progress reply's posting (one poster at a time).

Revision ID: 0010_intake
Revises: 0008_no_file_metadata
Create Date: 2026-12-10
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010_intake"
down_revision: str | None = "0009_reidentify_cooldown"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        batch.add_column(sa.Column("file_checked", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("announce_tries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("announce_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        batch.drop_column("announce_until")
        batch.drop_column("announce_tries")
        batch.drop_column("file_checked")
