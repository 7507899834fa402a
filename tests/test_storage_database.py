"""The Database wrapper: URLs, SQLite pragmas and folders, sessions."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from storage.database import Database, DatabaseURLError, parse_database_url, safe_url


async def test_sqlite_file_gets_wal_busy_timeout_and_its_folder(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'deep' / 'er' / 'x.db'}")
    try:
        assert db.dialect == "sqlite" and (tmp_path / "deep" / "er").is_dir()
        async with db.session() as s:
            assert (await s.exec(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await s.exec(text("PRAGMA busy_timeout"))).scalar() == 30000
        async with db.session(immediate=True) as s:
            await s.exec(text("CREATE TABLE t (x INTEGER)"))
            await s.commit()
    finally:
        await db.dispose()


def test_urls_are_normalised_and_checked():
    assert parse_database_url("postgres://u:p@h:5432/d").drivername == "postgresql+asyncpg"
    assert parse_database_url("postgresql://u@h/d").drivername == "postgresql+asyncpg"
    assert parse_database_url("sqlite:///var/x.db").drivername == "sqlite+aiosqlite"
    assert Database("postgres://u:p@h/d").dialect == "postgresql"
    assert safe_url("postgresql+asyncpg://u:hunter2@h/d") == "postgresql+asyncpg://u:***@h/d"
    assert "hunter2" not in repr(Database("postgres://u:hunter2@h/d"))
    with pytest.raises(DatabaseURLError, match="not supported"):
        parse_database_url("mysql://u@h/d")
    with pytest.raises(DatabaseURLError, match="not supported"):
        parse_database_url("sqlite+pysqlite:///x.db")
    with pytest.raises(DatabaseURLError, match="not a database URL"):
        parse_database_url("just words")
    with pytest.raises(DatabaseURLError, match="empty"):
        parse_database_url("")


@pytest.mark.postgres
async def test_postgresql_sessions_work(pg_url: str):
    db = Database(pg_url)
    try:
        async with db.session() as s:
            assert (await s.exec(text("SELECT current_setting('TimeZone') IS NOT NULL"))).scalar()
    finally:
        await db.dispose()
