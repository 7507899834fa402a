"""Shared fixtures: real databases and the real embedded engine for every test that needs them.

- `postgres_server` (session): a real PostgreSQL server started for this test session (see testbed/postgres.py);
  tests using it skip with the reason when no PostgreSQL binaries exist — except under CI (CI=true), where
  they must run and fail instead.
- tests marked `speech` skip the same way without the speech data beside the checkout, and fail under CI.
- `pg_url` (module): an empty database of its own on that server, per test module.
- `sqlite_url`: an empty SQLite file in the test's tmp dir.
- `db_url` / `db`: a fresh database migrated to head, once per backend (`[sqlite]`, `[postgresql]`);
  `db` is an open `storage.database.Database`. `sqlite_db` is the SQLite one alone.
- `local_engine` (session): the embedded speaker engine, one per test process.
- one ONNX model cache for the whole run (tests/shared_models.py), made when the run starts.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from ci import missing_speech, skip_or_fail
from shared_models import ENV, model_cache

from storage.database import Database
from storage.migrate import upgrade
from testbed.postgres import PostgresServer, PostgresUnavailable

T = TypeVar("T")
_names = itertools.count(1)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine to completion from sync code, on its own thread so no test's event loop is touched."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def sqlite_file_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def pytest_configure(config: pytest.Config) -> None:
    """The run's ONNX model cache (tests/shared_models.py), unless a parent process made it already."""
    if ENV not in os.environ:
        os.environ[ENV] = folder = tempfile.mkdtemp(prefix="voiceid-test-models-")
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Speech tests need ../shared/data: skip without it, but under CI fail (CI always has the data)."""
    if item.get_closest_marker("speech") is None:
        return
    reason = missing_speech()
    if reason is not None:
        skip_or_fail(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        skip_or_fail(f"PostgreSQL tests skipped: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pg_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database(f"module_{next(_names)}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return sqlite_file_url(tmp_path / "voiceid.db")


@pytest.fixture(scope="session")
def _sqlite_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-head") / "head.db"
    run_async(upgrade(sqlite_file_url(path)))
    return path


@pytest.fixture(scope="session")
def _pg_head(postgres_server: PostgresServer) -> str:
    name = "head_template"
    run_async(upgrade(postgres_server.create_database(name)))
    return name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database at the head migration: a copy of one migrated once per session."""
    if request.param == "sqlite":
        path = tmp_path / "voiceid-head.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_head"), path)
        return sqlite_file_url(path)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"test_{next(_names)}", template=request.getfixturevalue("_pg_head"))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
async def sqlite_db(tmp_path: Path, _sqlite_head: Path) -> AsyncIterator[Database]:
    path = tmp_path / "voiceid-sqlite-head.db"
    shutil.copyfile(_sqlite_head, path)
    database = Database(sqlite_file_url(path))
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def local_engine():
    """The embedded engine, one per test process (an xdist worker) like `tests.shared_cpu`: its worker process
    imports torch and loads the models (from the run's ONNX cache) once for every module, not once per module.
    Never closed by a test; its worker process ends with the test process (`exit_with_parent`). The engine is
    bound to no event loop, so each module's loop uses it. Tests about closing an engine make their own."""
    from bot.engines.local import LocalEngine

    return LocalEngine(workers=1, model_cache=model_cache())
