"""The async database: one `Database` per process, wrapping SQLAlchemy's `AsyncEngine`.

SQLite (the default, via aiosqlite) runs in WAL mode with a busy timeout so that the bot, its workers
and the CLI can share one file, created readable by its owner only. PostgreSQL (via asyncpg) is for several
processes at scale. Voiceprints, tokens and meeting content are encrypted with the key ring the caller passes
(`storage.crypto`).

Deleted is deleted on SQLite too: `secure_delete` zeroes a deleted row's bytes in the pages it leaves, and
`Database.checkpoint()` (called after every deletion of personal data) folds the write-ahead log into the file
and truncates it, since the `-wal` file keeps the older page images, deleted rows included, until then.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.crypto import KeyRing, attach

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_IMMEDIATE = "voiceid_sqlite_immediate"  # execution option: begin with BEGIN IMMEDIATE
SQLITE_NO_TRANSACTION = "voiceid_sqlite_no_transaction"  # execution option: begin nothing (for a checkpoint)

log = logging.getLogger(__name__)


def _driver_errors() -> tuple[type[BaseException], ...]:
    try:
        import asyncpg
    except ImportError:
        return ()
    return (asyncpg.PostgresError, asyncpg.InterfaceError)


# What an unreachable or restarting database raises (asyncpg's "starting up" escapes SQLAlchemy's wrapping
# on reconnect): worth retrying until a lease runs out, not worth failing a job for.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError, TimeoutError, *_driver_errors())


def normalise_database_url(url: str) -> str:
    """Map the URLs people paste (Heroku's `postgres://`, plain `postgresql://`, `sqlite:///`) to async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://"):]
    if url.startswith("sqlite:///"):
        url = "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
    return url


class DatabaseURLError(ValueError):
    """The database URL cannot be used; the message says why and what is accepted."""


def parse_database_url(url: str) -> URL:
    """Normalise and check a URL: only SQLite (aiosqlite) and PostgreSQL (asyncpg) are supported."""
    if not url:
        raise DatabaseURLError("DATABASE_URL is empty: use sqlite:///path/to/file.db or postgresql://user@host/db")
    try:
        parsed = make_url(normalise_database_url(url))
    except ArgumentError:
        raise DatabaseURLError("DATABASE_URL is not a database URL (not quoted: it may hold a password); "
                               "use sqlite:///path/to/file.db or postgresql://user@host/db") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if (backend, driver) not in {("sqlite", "aiosqlite"), ("postgresql", "asyncpg")}:
        raise DatabaseURLError(
            f"DATABASE_URL uses {parsed.drivername!r}, which is not supported: "
            "use sqlite:///path/to/file.db (SQLite) or postgresql://user@host/db (PostgreSQL)")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with any password hidden, fit for logs and messages."""
    return (url if isinstance(url, URL) else make_url(url)).render_as_string(hide_password=True)


T = TypeVar("T")


async def whole(transaction: Awaitable[T]) -> T:
    """Runs one transaction to its end even when the caller is cancelled meanwhile, then passes the cancellation
    on: a task is cancelled between transactions, never inside one. A SQLite statement cut off by a
    cancellation (say, while it waits for the write lock) leaves its connection invalidated but still holding
    the lock, and every other writer then fails with "database is locked" (measured: a heartbeat cancelled
    while it waited kept the file locked past a 40 s probe)."""
    task = asyncio.ensure_future(transaction)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved: the caller is stopping, the outcome is moot
        raise cancelled
    return task.result()


class Database:
    """`async with db.session() as s:` gives an `AsyncSession` that keeps objects usable after commit.

    On SQLite, `db.session(immediate=True)` starts the transaction with `BEGIN IMMEDIATE`: use it for
    read-then-write transactions so that two writers queue on the busy timeout instead of failing with
    "database is locked" when one upgrades its read lock. On PostgreSQL it changes nothing.

    `keys` encrypt voiceprints, tokens and meeting content (the first writes, all read); without keys they are
    written in plain text, which only tests and the migration runner do.
    """

    def __init__(self, url: str, *, keys: Sequence[str] = (), pool_size: int = 5, max_overflow: int = 10,
                 echo: bool = False):
        parsed = parse_database_url(url)
        self.keyring = KeyRing(keys)
        self.url: URL = parsed
        self.dialect: Literal["sqlite", "postgresql"] = parsed.get_backend_name()  # type: ignore[assignment]
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            _create_private_file(parsed)
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(parsed, **kwargs)
        attach(self.engine.dialect, self.keyring)
        if self.dialect == "sqlite":
            _install_sqlite_hooks(self.engine)
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({safe_url(self.url)!r})"

    @contextlib.asynccontextmanager
    async def session(self, *, immediate: bool = False) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            if immediate and self.dialect == "sqlite":
                await session.connection(execution_options={SQLITE_IMMEDIATE: True})
            yield session

    async def checkpoint(self) -> bool:
        """After deleting personal data: on SQLite, copy the write-ahead log into the main file (where
        `secure_delete` has zeroed the deleted rows) and truncate it to nothing, so no older page image of a
        deleted row stays in `-wal`. Waits (busy timeout) for readers of older snapshots; False if one still
        held the log, which then keeps its pages until the next checkpoint. PostgreSQL: nothing to do here
        (dead rows go with VACUUM; see SECURITY.md)."""
        if self.dialect != "sqlite":
            return True
        async with self.engine.connect() as conn:
            await conn.execution_options(**{SQLITE_NO_TRANSACTION: True})
            busy, _, _ = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).one()
        if busy:
            log.warning("SQLite checkpoint after a deletion was blocked by a reader; the write-ahead log keeps "
                        "the deleted rows' pages until the next checkpoint")
        return not busy

    async def dispose(self) -> None:
        await self.engine.dispose()


def _create_private_file(url: URL) -> None:
    """The SQLite file (and its folder) made before SQLite does, mode 0600: it holds biometric data.

    SQLite gives its -wal and -shm files the database file's mode."""
    name = url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    """WAL + busy timeout on every connection, transactions begun by us (pysqlite's own are unreliable), and
    deleted rows overwritten (not every SQLite build does that by default): a deleted voiceprint is gone."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(SQLITE_NO_TRANSACTION):
            return  # a checkpoint cannot run inside a transaction
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(SQLITE_IMMEDIATE) else "BEGIN")
