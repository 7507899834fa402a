"""Job reliability: an engine-job deadline, an at-most-once chart marker, and when the outcome was shown.

Revision ID: 0003_reliability
Revises: 0002_deletion_generation
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_reliability"
down_revision: str | None = "0002_deletion_generation"
branch_labels: str | None = None
depends_on: str | None = None

COLUMNS = ("engine_deadline_at", "chart_started_at", "notified_at")


def upgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    # Outcomes that ended before this revision were shown by the code of the time: never announce them again.
    op.execute("UPDATE recording SET notified_at = updated_at WHERE status IN ('posted', 'failed')")


def downgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
