"""Speaker-count hints: how many people speak in a recording, as the message that shared it said ("3 speakers",
"3-4 people") or as the person who pressed "Identify again" set it. Two nullable counts (equal for an exact
number) and where they came from; the job passes them to the engine (`numSpeakers`, or `minSpeakers` and
`maxSpeakers`). Rows stored before have none, so nothing changes for them.

Revision ID: 0015_speaker_hints
Revises: 0013_voiceprint_names (the lead rechains it after 0014_near_matches at merge)
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015_speaker_hints"
down_revision: str | None = "0013_voiceprint_names"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        batch.add_column(sa.Column("min_speakers", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_speakers", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("speakers_from", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recording") as batch:
        batch.drop_column("speakers_from")
        batch.drop_column("max_speakers")
        batch.drop_column("min_speakers")
