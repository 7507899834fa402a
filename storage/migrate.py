"""Apply the Alembic migrations (`await upgrade(url)`; `python -m bot migrate` from the command line), and
re-encrypt the sealed columns with the current key (`reencrypt_all`; `python -m bot rotate-keys`).

The Alembic config is built here from package paths, so migrations run from any working directory
and without an alembic.ini. Concurrent starts are safe: PostgreSQL takes an advisory lock, SQLite an
immediate (write) transaction, so a second process waits and then finds nothing to do.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlmodel import select

from storage.crypto import SealError
from storage.database import SQLITE_IMMEDIATE, Database, safe_url
from storage.models import Recording, RecordingOutput, Voiceprint, Workspace

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
_PG_MIGRATION_LOCK = 0x766F6963  # any fixed key; "voic"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@dataclass(frozen=True)
class MigrationReport:
    url: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def describe(self) -> str:
        if not self.changed:
            return f"Database {self.url} is up to date (revision {self.after})."
        return f"Database {self.url} migrated from {self.before or 'an empty database'} to revision {self.after}."


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(db: Database) -> str | None:
    """The revision the database is at (None: never migrated); for readiness checks."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(_current)


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def upgrade(url: str, revision: str = "head") -> MigrationReport:
    """Migrate the database at `url` to `revision`; creates the SQLite file (and its folder) if needed."""
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            if db.dialect == "sqlite":
                await conn.execution_options(**{SQLITE_IMMEDIATE: True})
            async with conn.begin():
                if db.dialect == "postgresql":
                    await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
                before = await conn.run_sync(_current)
                await conn.run_sync(_upgrade, revision)
                after = await conn.run_sync(_current)
    finally:
        await db.dispose()
    return MigrationReport(url=safe_url(db.url), before=before, after=after)


# -- key rotation: a data migration of the sealed columns ----------------------------------------------

SEALED_COLUMNS = {Voiceprint: ("voiceprint",), Workspace: ("bot_token", "bot_refresh_token"),
                  Recording: ("result", "relabels", "file_name"), RecordingOutput: ("url",)}
_BATCH = 100  # rows per transaction: a result holds a whole transcript, and writers wait while one runs


async def reencrypt_all(db: Database) -> dict[str, int]:
    """Reads each row with any configured key (or as legacy plain text) and writes it back sealed with the
    first key; returns the rows rewritten per table. Afterwards the older keys can be retired.

    Batches of locked rows, one transaction each, so the bot can keep running (every row reads with either
    key meanwhile) and a correction made meanwhile is never overwritten with the value read before it. Ends
    with a checkpoint, so no page image of the old ciphertext or plain text stays in SQLite's `-wal`."""
    if not db.keyring.encrypts:
        raise SealError("re-encryption needs an encryption key")
    counts: dict[str, int] = {}
    for model, columns in SEALED_COLUMNS.items():
        counts[model.__tablename__] = after = 0
        while True:
            async with db.session(immediate=True) as s:
                rows = (await s.exec(select(model.id, *(getattr(model, c) for c in columns))
                                     .where(model.id > after).order_by(model.id).limit(_BATCH)
                                     .with_for_update())).all()
                for row_id, *values in rows:
                    stmt = update(model).where(model.id == row_id).values(dict(zip(columns, values, strict=True)))
                    await s.exec(stmt.execution_options(synchronize_session=False))
                await s.commit()
            if not rows:
                break
            counts[model.__tablename__] += len(rows)
            after = rows[-1][0]
    await db.checkpoint()
    return counts
