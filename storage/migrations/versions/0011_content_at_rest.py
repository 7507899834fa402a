"""Meeting content is encrypted at rest: a recording's result, relabels, file name and transcript link become
TEXT holding sealed values (`storage.crypto.Sealed`/`SealedJSON`), which no longer fit JSON or VARCHAR(500).

Existing rows keep their plain text (JSON documents as text) and still read; `python -m bot rotate-keys`
encrypts them. Downgrading needs that content in plain text again: the older version cannot read sealed values
(on PostgreSQL the cast back to JSON / VARCHAR fails on them and the downgrade stops).

Revision ID: 0011_content_at_rest
Revises: 0008_no_file_metadata
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011_content_at_rest"
down_revision: str | None = "0010_intake"
branch_labels: str | None = None
depends_on: str | None = None

_JSON = ("result", "relabels")
_NAMES = {"file_name": False, "transcript_url": True}  # column: nullable


def upgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        for column in _JSON:
            batch.alter_column(column, type_=sa.Text(), existing_type=sa.JSON(none_as_null=True),
                               existing_nullable=True, postgresql_using=f"{column}::text")
        for column, nullable in _NAMES.items():
            batch.alter_column(column, type_=sa.Text(), existing_type=sa.String(500), existing_nullable=nullable)


def downgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        for column in _JSON:
            batch.alter_column(column, type_=sa.JSON(none_as_null=True), existing_type=sa.Text(),
                               existing_nullable=True, postgresql_using=f"{column}::json")
        for column, nullable in _NAMES.items():
            batch.alter_column(column, type_=sa.String(500), existing_type=sa.Text(), existing_nullable=nullable)
