"""Several voiceprints per person: each has a name the person gives it ("headset", "phone") and a random label,
the only thing engines see of it (mapped back to the person by Voice ID). A person's voiceprints are unique by
(team, user, engine, name) instead of (team, user, engine); an enrollment job carries the name it saves under.
A recording's engine job id becomes TEXT: an identify split into batches of voiceprints keeps all its jobs' ids.

Existing voiceprints become the person's voiceprint named "default", each with a fresh label. Downgrading keeps
one voiceprint per person and engine (the most recently updated) and deletes the others, since the older schema
cannot hold them (and, on PostgreSQL, stops on a batched job id longer than the old 200 characters).

Revision ID: 0013_voiceprint_names
Revises: 0012_people
Create Date: 2026-12-12
"""
from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision: str = "0013_voiceprint_names"
down_revision: str | None = "0012_people"
branch_labels: str | None = None
depends_on: str | None = None

NAME_MAX = 24


def new_label() -> str:
    """As `storage.voiceprints.new_label` makes them (a migration never imports the live code)."""
    return "vp" + secrets.token_hex(12)


def upgrade() -> None:
    with op.batch_alter_table("voiceprint") as batch:
        batch.add_column(sa.Column("name", sa.String(NAME_MAX), nullable=False, server_default="default"))
        batch.add_column(sa.Column("label", sa.String(32), nullable=True))
    conn = op.get_bind()
    table = sa.table("voiceprint", sa.column("id", sa.Integer()), sa.column("label", sa.String(32)))
    for (row_id,) in conn.execute(sa.select(table.c.id)).all():
        conn.execute(table.update().where(table.c.id == row_id).values(label=new_label()))
    with op.batch_alter_table("voiceprint") as batch:
        batch.alter_column("label", existing_type=sa.String(32), nullable=False)
        batch.drop_constraint("uq_voiceprint_team_user_engine", type_="unique")
        batch.create_unique_constraint("uq_voiceprint_team_user_engine_name", ["team_id", "user_id", "engine", "name"])
        batch.create_unique_constraint("uq_voiceprint_label", ["label"])
    with op.batch_alter_table("enrollmentjob") as batch:
        batch.add_column(sa.Column("name", sa.String(NAME_MAX), nullable=False, server_default="default"))
    with op.batch_alter_table("recording") as batch:
        batch.alter_column("engine_job_id", type_=sa.Text(), existing_type=sa.String(200), existing_nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM voiceprint WHERE id NOT IN (SELECT keep FROM (SELECT MAX(id) AS keep FROM voiceprint v "
               "WHERE v.updated_at = (SELECT MAX(w.updated_at) FROM voiceprint w WHERE w.team_id = v.team_id AND "
               "w.user_id = v.user_id AND w.engine = v.engine) GROUP BY team_id, user_id, engine) AS kept)")
    with op.batch_alter_table("recording") as batch:
        batch.alter_column("engine_job_id", type_=sa.String(200), existing_type=sa.Text(), existing_nullable=True)
    with op.batch_alter_table("enrollmentjob") as batch:
        batch.drop_column("name")
    with op.batch_alter_table("voiceprint") as batch:
        batch.drop_constraint("uq_voiceprint_label", type_="unique")
        batch.drop_constraint("uq_voiceprint_team_user_engine_name", type_="unique")
        batch.create_unique_constraint("uq_voiceprint_team_user_engine", ["team_id", "user_id", "engine"])
        batch.drop_column("label")
        batch.drop_column("name")
