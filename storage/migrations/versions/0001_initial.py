"""Initial schema: workspaces, OAuth states, voiceprints, recordings (the job queue) and the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

RECORDING_STATUSES = ("queued", "running", "succeeded", "posted", "failed")
AUDIT_ACTIONS = ("enroll", "replace", "delete", "claim", "unclaim", "purge", "uninstall")


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _str(name: str, length: int, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=nullable)


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _enum(name: str, values: tuple[str, ...], type_name: str) -> sa.Column:
    return sa.Column(name, sa.Enum(*values, name=type_name, native_enum=False, length=16), nullable=False)


def _json(name: str) -> sa.Column:
    return sa.Column(name, sa.JSON(none_as_null=True), nullable=True)


def upgrade() -> None:
    op.create_table(
        "workspace",
        _id(),
        _str("install_key", 80, nullable=False),
        _str("team_id", 32),
        _str("enterprise_id", 32),
        _str("bot_user_id", 32),
        _str("bot_id", 32),
        _str("bot_token", 512),
        _str("bot_refresh_token", 512),
        _when("bot_token_expires_at", nullable=True),
        _str("bot_scopes", 2000),
        _str("installer_user_id", 32),
        sa.Column("is_enterprise_install", sa.Boolean(), nullable=False),
        _when("installed_at"),
        _when("uninstalled_at", nullable=True),
        sa.UniqueConstraint("install_key", name="uq_workspace_install_key"),
    )
    op.create_index("ix_workspace_team_id", "workspace", ["team_id"])

    op.create_table(
        "oauthstate",
        _id(),
        _str("state", 128, nullable=False),
        _when("expires_at"),
        sa.UniqueConstraint("state", name="uq_oauthstate_state"),
    )
    op.create_index("ix_oauthstate_expires_at", "oauthstate", ["expires_at"])

    op.create_table(
        "voiceprint",
        _id(),
        _str("team_id", 32, nullable=False),
        _str("user_id", 32, nullable=False),
        _str("engine", 32, nullable=False),
        _str("model_id", 200, nullable=False),
        sa.Column("voiceprint", sa.Text(), nullable=False),
        _when("consent_at"),
        sa.Column("clip_duration", sa.Float(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.UniqueConstraint("team_id", "user_id", "engine", name="uq_voiceprint_team_user_engine"),
    )

    op.create_table(
        "recording",
        _id(),
        _str("team_id", 32, nullable=False),
        _str("channel_id", 32, nullable=False),
        _str("file_id", 32, nullable=False),
        _str("file_name", 500, nullable=False),
        _str("mimetype", 200),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        _str("uploader_id", 32),
        _str("message_ts", 32),
        _str("thread_ts", 32),
        _enum("status", RECORDING_STATUSES, "recordingstatus"),
        _str("engine", 32, nullable=False),
        _str("engine_job_id", 200),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _str("lease_owner", 200),
        _when("lease_expires_at", nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        _str("error_code", 64),
        sa.Column("error_message", sa.Text(), nullable=True),
        _json("result"),
        _json("relabels"),
        _str("reply_ts", 32),
        _str("posted_ts", 32),
        _str("chart_file_id", 32),
        _when("created_at"),
        _when("updated_at"),
        _when("finished_at", nullable=True),
        sa.UniqueConstraint("team_id", "file_id", name="uq_recording_team_file"),
    )
    op.create_index("ix_recording_status_created", "recording", ["status", "created_at"])
    op.create_index("ix_recording_finished_at", "recording", ["finished_at"])

    op.create_table(
        "auditevent",
        _id(),
        _str("team_id", 32),
        _str("actor_id", 32),
        _enum("action", AUDIT_ACTIONS, "auditaction"),
        _str("target_type", 32, nullable=False),
        _str("target_id", 200),
        _json("detail"),
        _when("created_at"),
    )
    op.create_index("ix_auditevent_team_id", "auditevent", ["team_id"])
    op.create_index("ix_auditevent_created_at", "auditevent", ["created_at"])


def downgrade() -> None:
    for table in ("auditevent", "recording", "voiceprint", "oauthstate", "workspace"):
        op.drop_table(table)
