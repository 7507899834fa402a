"""Data-protection requests: the consent text a person ticked is stored with their voiceprint (and with their
enrollment job until it is made), so `python -m bot people export` can show what they agreed to, not only when.
Rows enrolled before this revision keep NULL (the export says so).

Revision ID: 0012_people
Revises: 0011_content_at_rest
Create Date: 2026-12-10
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012_people"
down_revision: str | None = "0011_content_at_rest"
branch_labels: str | None = None
depends_on: str | None = None

_TABLES = ("voiceprint", "enrollmentjob")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("consent_text", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("consent_text")
