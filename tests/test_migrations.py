"""Migrations: empty → head on both databases, models and migrations agree, and `python -m bot migrate`."""
from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from storage.database import Database
from storage.migrate import alembic_config, head_revision, upgrade
from storage.models import metadata

_fresh = itertools.count()
TABLES = {"workspace", "oauthstate", "voiceprint", "recording", "auditevent", "deletiongeneration", "enrollmentjob",
          "reidentifypress", "nearmatch", "recordingoutput", "alembic_version"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_server").create_database(f"empty_{next(_fresh)}")


def _schema_diff(connection) -> list:
    return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata)


def _downgrade_to_base(connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, "base")


async def test_upgrade_from_empty_matches_the_models_and_round_trips(empty_url: str):
    first = await upgrade(empty_url)
    assert first.before is None and first.after == head_revision() and first.changed
    assert "migrated from an empty database to revision" in first.describe()
    again = await upgrade(empty_url)
    assert not again.changed and "up to date" in again.describe()

    db = Database(empty_url)
    try:
        async with db.engine.connect() as conn:
            assert set(await conn.run_sync(lambda c: inspect(c).get_table_names())) == TABLES
            assert await conn.run_sync(_schema_diff) == [], "models and migrations disagree"
        async with db.engine.begin() as conn:
            await conn.run_sync(_downgrade_to_base)
        async with db.engine.connect() as conn:
            assert set(await conn.run_sync(lambda c: inspect(c).get_table_names())) == {"alembic_version"}
    finally:
        await db.dispose()
    assert (await upgrade(empty_url)).after == head_revision()


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VAR_DIR")}
    return subprocess.run([sys.executable, "-m", "bot", "migrate", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_cli_creates_the_sqlite_database_under_var_by_default(tmp_path: Path):
    first = _cli(tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "var" / "voiceid.db").is_file()
    assert "var/voiceid.db migrated from an empty database to revision" in first.stdout
    second = _cli(tmp_path)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_cli_explains_a_bad_database_url(tmp_path: Path):
    bad = _cli(tmp_path, "--database-url", "mysql://u:secret@h/db")
    assert bad.returncode == 2
    assert "not supported" in bad.stderr and "Traceback" not in bad.stderr and "secret" not in bad.stderr


async def test_concurrent_starts_migrate_once(empty_url: str):
    reports = await asyncio.gather(*(upgrade(empty_url) for _ in range(3)))
    assert sorted(r.before or "" for r in reports) == ["", head_revision(), head_revision()]
    assert {r.after for r in reports} == {head_revision()}


def _migrate(connection, revision: str, down: bool = False) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(cfg, revision)


async def test_existing_voiceprints_become_the_persons_default_each_with_a_label_of_its_own(empty_url: str):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    insert = text("INSERT INTO voiceprint (team_id, user_id, engine, model_id, voiceprint, consent_at, clip_duration, "
                  "created_at, updated_at{name}) VALUES ('T1', :user, :engine, 'm', 'v', :at, 5.0, :at, :at{value})")
    now = datetime.now(UTC)
    db = Database(empty_url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate, "0012_people")
            for user, engine in (("U1", "local"), ("U1", "pyannoteai"), ("U2", "local")):
                await conn.execute(text(insert.text.format(name="", value="")), {"user": user, "engine": engine,
                                                                                 "at": now})
            await conn.run_sync(_migrate, "head")
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT user_id, engine, name, label FROM voiceprint ORDER BY id"))).all()
        assert [tuple(r[:3]) for r in rows] == [("U1", "local", "default"), ("U1", "pyannoteai", "default"),
                                                ("U2", "local", "default")]
        assert len({r[3] for r in rows}) == 3 and all(r[3].startswith("vp") and len(r[3]) == 26 for r in rows)
        named = text(insert.text.format(name=", name, label", value=", :name, :label"))
        async with db.engine.begin() as conn:  # a second voiceprint under another name now fits
            await conn.execute(named, {"user": "U1", "engine": "local", "at": now + timedelta(hours=1),
                                       "name": "phone", "label": "vp-phone"})
        with pytest.raises(IntegrityError):  # the same name twice does not
            async with db.engine.begin() as conn:
                await conn.execute(named, {"user": "U1", "engine": "local", "at": now, "name": "phone",
                                           "label": "vp-other"})
        async with db.engine.begin() as conn:  # down again: one per person and engine, the newest
            await conn.run_sync(_migrate, "0012_people", True)
        async with db.engine.connect() as conn:
            kept = (await conn.execute(text("SELECT user_id, engine, updated_at FROM voiceprint ORDER BY id"))).all()
        assert [(u, e) for u, e, _ in kept] == [("U1", "pyannoteai"), ("U2", "local"), ("U1", "local")]
    finally:
        await db.dispose()


async def test_a_recordings_chart_and_transcript_move_to_its_outputs_and_back(empty_url: str):
    from datetime import UTC, datetime

    from sqlalchemy import text

    from storage.crypto import KeyRing, new_key
    from storage.thread import CHART, TRANSCRIPT, get_output

    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    key, link = new_key(), "https://slack.example/files/U1/FMD/standup.md"
    sealed = KeyRing([key]).seal(link)  # copied as stored: a sealed link stays sealed
    insert = text("INSERT INTO recording (team_id, channel_id, file_id, file_name, status, engine, attempts, progress, "
                  "created_at, updated_at, queued_at, relabel_seq{cols}) VALUES ('T1', 'C1', :file, 'a.wav', 'posted', "
                  "'local', 1, 1.0, :at, :at, :at, 3{vals})")
    outputs = {"chart_file_id": "FCHART", "chart_started_at": at, "chart_seq": 2, "chart_lock_owner": "w1",
               "chart_lock_until": at, "transcript_started_at": at, "transcript_file_id": "FMD",
               "transcript_url": sealed, "transcript_error": None}
    db = Database(empty_url, keys=[key])
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate, "0015_speaker_hints")
            stmt = insert.text.format(cols="".join(f", {c}" for c in outputs), vals="".join(f", :{c}" for c in outputs))
            await conn.execute(text(stmt), {"file": "F1", "at": at, **outputs})
            await conn.execute(text(insert.text.format(cols="", vals="")), {"file": "F2", "at": at})
            await conn.run_sync(_migrate, "head")
        async with db.engine.connect() as conn:
            left = {c["name"] for c in await conn.run_sync(lambda c: inspect(c).get_columns("recording"))}
            ids = dict((await conn.execute(text("SELECT file_id, id FROM recording"))).all())
            stored_url = (await conn.execute(text("SELECT url FROM recordingoutput WHERE kind = 'transcript'"))).scalar()
            kinds = (await conn.execute(text("SELECT recording_id, kind FROM recordingoutput ORDER BY kind"))).all()
        assert not left & set(outputs) and {"relabel_seq", "posted_ts", "reply_ts"} <= left
        assert [tuple(k) for k in kinds] == [(ids["F1"], "chart"), (ids["F1"], "transcript")], "nothing for F2"
        assert stored_url == sealed
        chart, transcript = await get_output(db, ids["F1"], CHART), await get_output(db, ids["F1"], TRANSCRIPT)
        assert (chart.file_id, chart.started_at, chart.seq, chart.lock_owner, chart.lock_until) == \
            ("FCHART", at, 2, "w1", at)
        assert (transcript.started_at, transcript.file_id, transcript.url, transcript.error) == (at, "FMD", link, None)
        assert (await get_output(db, ids["F2"], CHART)).id is None

        async with db.engine.begin() as conn:  # down again: the columns come back with their values
            await conn.run_sync(_migrate, "0015_speaker_hints", True)
        async with db.engine.connect() as conn:
            back = (await conn.execute(text(f"SELECT file_id, {', '.join(outputs)} FROM recording ORDER BY file_id"))).all()
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert "recordingoutput" not in tables and not any(t.startswith("_") for t in tables)
        first, second = dict(zip(("file_id", *outputs), back[0], strict=True)), back[1]
        assert {k: v for k, v in first.items() if not k.endswith(("_at", "_until"))} == \
            {"file_id": "F1", **{k: v for k, v in outputs.items() if not k.endswith(("_at", "_until"))}}
        assert all(first[k] is not None for k in outputs if k.endswith(("_at", "_until")))
        assert tuple(second) == ("F2", None, None, 0, None, None, None, None, None, None)
    finally:
        await db.dispose()
