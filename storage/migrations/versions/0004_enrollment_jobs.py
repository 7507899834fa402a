"""Durable enrollments: enrollment jobs with leases like recordings, and a retry backoff (`not_before`) on both.

Revision ID: 0004_enrollment_jobs
Revises: 0003_reliability
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_enrollment_jobs"
down_revision: str | None = "0003_reliability"
branch_labels: str | None = None
depends_on: str | None = None


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "enrollmentjob",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("file_id", sa.String(32), nullable=False),
        sa.Column("view_id", sa.String(64), nullable=True),
        _when("consent_at", nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("status", sa.Enum("queued", "running", name="enrollmentstatus", native_enum=False, length=16),
                  nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        _when("lease_expires_at"),
        _when("not_before"),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
    )
    op.create_index("ix_enrollmentjob_status_created", "enrollmentjob", ["status", "created_at"])
    op.create_index("ix_enrollmentjob_user_id", "enrollmentjob", ["user_id"])
    with op.batch_alter_table("recording") as batch:
        batch.add_column(_when("not_before"))


def downgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        batch.drop_column("not_before")
    op.drop_index("ix_enrollmentjob_user_id", table_name="enrollmentjob")
    op.drop_index("ix_enrollmentjob_status_created", table_name="enrollmentjob")
    op.drop_table("enrollmentjob")
