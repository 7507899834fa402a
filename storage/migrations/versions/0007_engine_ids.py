"""Voiceprints and recordings keyed by a stable engine id (`local`, `pyannoteai`, `server`), not its display
name: renaming a label no longer orphans every enrollment.

Revision ID: 0007_engine_ids
Revises: 0006_diarize_only
Create Date: 2026-11-26
"""
from __future__ import annotations

from alembic import op

revision: str = "0007_engine_ids"
down_revision: str | None = "0006_diarize_only"
branch_labels: str | None = None
depends_on: str | None = None

# display name stored before this revision → engine id
RENAMES = {"pyannoteAI": "pyannoteai", "the engine server": "server"}
TABLES = ("voiceprint", "recording")


def _rename(pairs: dict[str, str]) -> None:
    for table in TABLES:
        for old, new in pairs.items():
            op.execute(f"UPDATE {table} SET engine = '{new}' WHERE engine = '{old}'")


def upgrade() -> None:
    _rename(RENAMES)


def downgrade() -> None:
    _rename({new: old for old, new in RENAMES.items()})
