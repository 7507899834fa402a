"""Voiceprints and OAuth tokens are encrypted at rest on SQLite and PostgreSQL, legacy plain-text rows still
read, keys rotate (`python -m bot rotate-keys`, meeting content included: see also test_content_at_rest.py),
and the SQLite file and generated key are owner-only."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from storage.crypto import SEALED_PREFIX, SealError
from storage.database import Database
from storage.migrate import reencrypt_all
from storage.recordings import enqueue_recording, find_recording
from storage.voiceprints import get_voiceprint, upsert_voiceprint, voiceprints_for_users
from storage.workspaces import get_workspace, save_workspace

VOICEPRINT = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw"
TOKEN, REFRESH = "xoxb-1111-2222-secretbottoken", "xoxe-1-secretrefreshtoken"
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
ROOT = Path(__file__).resolve().parents[1]


async def _store(db: Database) -> None:
    await upsert_voiceprint(db, team_id="T1", user_id="U1", engine="local", model_id="m", voiceprint=VOICEPRINT,
                            consent_at=datetime.now(UTC), clip_duration=5.0)
    await save_workspace(db, team_id="T1", bot_token=TOKEN, bot_refresh_token=REFRESH)


async def _raw(db: Database) -> list[str]:
    """The stored bytes as the database holds them (no column types applied)."""
    async with db.session() as s:
        vps = (await s.exec(text("SELECT voiceprint FROM voiceprint"))).scalars().all()
        toks = (await s.exec(text("SELECT bot_token, bot_refresh_token FROM workspace"))).all()
    return [*vps, *(t for row in toks for t in row)]


async def _read(db: Database) -> tuple[str, str, str, list[str]]:
    vp = await get_voiceprint(db, "T1", "U1")
    ws = await get_workspace(db, "T1")
    listed = [v.voiceprint for v in await voiceprints_for_users(db, "T1", ["U1"], "local")]
    return vp.voiceprint, ws.bot_token, ws.bot_refresh_token, listed


async def test_voiceprints_and_tokens_are_encrypted_at_rest_and_read_back(db_url: str):
    db = Database(db_url, keys=[NEW])
    try:
        await _store(db)
        raw = await _raw(db)
        assert len(raw) == 3 and all(v.startswith(SEALED_PREFIX) for v in raw)
        assert not any(secret in v for v in raw for secret in (VOICEPRINT, TOKEN, REFRESH))
        assert await _read(db) == (VOICEPRINT, TOKEN, REFRESH, [VOICEPRINT])
    finally:
        await db.dispose()


async def test_plain_text_rows_read_and_rotation_moves_everything_to_the_new_key(db_url: str):
    legacy = Database(db_url)  # as an older version wrote them
    await _store(legacy)
    assert not any(v.startswith(SEALED_PREFIX) for v in await _raw(legacy))
    await legacy.dispose()

    old = Database(db_url, keys=[OLD])
    assert await _read(old) == (VOICEPRINT, TOKEN, REFRESH, [VOICEPRINT])
    assert await reencrypt_all(old) == {"voiceprint": 1, "workspace": 1, "recording": 0, "recordingoutput": 0}
    await old.dispose()

    both = Database(db_url, keys=[NEW, OLD])
    assert await _read(both) == (VOICEPRINT, TOKEN, REFRESH, [VOICEPRINT])
    await reencrypt_all(both)
    await both.dispose()

    new_only = Database(db_url, keys=[NEW])
    old_only = Database(db_url, keys=[OLD])
    unkeyed = Database(db_url)
    try:
        assert all(v.startswith(SEALED_PREFIX) for v in await _raw(new_only))
        assert await _read(new_only) == (VOICEPRINT, TOKEN, REFRESH, [VOICEPRINT])
        with pytest.raises(SealError, match="not configured"):
            await get_voiceprint(old_only, "T1", "U1")
        with pytest.raises(SealError, match="no encryption key"):
            await get_workspace(unkeyed, "T1")
    finally:
        for d in (new_only, old_only, unkeyed):
            await d.dispose()


def test_a_malformed_key_is_refused():
    with pytest.raises(SealError, match="key 2 is not a Fernet key"):
        Database("sqlite:///unused.db", keys=[NEW, "not-a-key"])


async def test_the_sqlite_file_and_its_wal_are_owner_only(tmp_path: Path):
    path = tmp_path / "var" / "voiceid.db"
    db = Database(f"sqlite:///{path}", keys=[NEW])
    try:
        async with db.session() as s:
            await s.exec(text("CREATE TABLE t (x TEXT)"))
            await s.exec(text("INSERT INTO t VALUES ('x')"))
            await s.commit()
            for f in (path, path.with_name("voiceid.db-wal")):
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f.name
    finally:
        await db.dispose()


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "DATABASE_", "DATA_", "ENGINE", "VAR_DIR", "LOG_LEVEL"))}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=base | {"PYTHONPATH": str(ROOT)} | env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_sqlite_default_generates_an_owner_only_key_with_a_warning_and_rotate_keys_uses_it(tmp_path: Path):
    first = _cli(tmp_path, "rotate-keys")
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "var" / "data-encryption.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "WARNING" in first.stderr and "Back it up" in first.stderr
    assert key_file.read_text().strip() not in first.stderr
    assert stat.S_IMODE((tmp_path / "var" / "voiceid.db").stat().st_mode) == 0o600
    again = _cli(tmp_path, "rotate-keys")
    assert again.returncode == 0 and "Generated" not in again.stderr, "the key is generated once"


async def test_rotate_keys_command_re_encrypts_with_the_first_key(db_url: str, tmp_path: Path):
    db = Database(db_url, keys=[OLD])
    await _store(db)
    await enqueue_recording(db, team_id="T1", channel_id="C1", file_id="F1", file_name="Board meeting.m4a",
                            uploader_id="U1", message_ts="1.1", engine="local")
    await db.dispose()
    done = _cli(tmp_path, "rotate-keys", DATABASE_URL=db_url, DATA_ENCRYPTION_KEYS=f"{NEW}, {OLD}")
    assert done.returncode == 0, done.stderr
    assert "1 voiceprint(s), 1 workspace token row(s) and 1 recording(s)" in done.stdout
    assert OLD not in done.stderr + done.stdout and NEW not in done.stderr + done.stdout
    new_only = Database(db_url, keys=[NEW])
    try:
        assert await _read(new_only) == (VOICEPRINT, TOKEN, REFRESH, [VOICEPRINT])
        assert (await find_recording(new_only, "T1", "F1")).file_name == "Board meeting.m4a"
    finally:
        await new_only.dispose()
    missing_old = _cli(tmp_path, "rotate-keys", DATABASE_URL=db_url, DATA_ENCRYPTION_KEYS=OLD)
    assert missing_old.returncode == 1 and "Add the old key" in missing_old.stderr
    assert "Traceback" not in missing_old.stderr


@pytest.mark.postgres
def test_postgresql_without_a_key_does_not_start(pg_url: str, tmp_path: Path):
    for command in (["serve"], ["worker"], ["rotate-keys"]):
        run = _cli(tmp_path, *command, DATABASE_URL=pg_url, SLACK_BOT_TOKEN="xoxb-1-2-3",
                   SLACK_SIGNING_SECRET="s" * 16)
        assert run.returncode == 2, (command, run.stderr)
        assert "DATA_ENCRYPTION_KEYS is missing" in run.stderr and "Traceback" not in run.stderr
    bad = _cli(tmp_path, "rotate-keys", DATABASE_URL=pg_url, DATA_ENCRYPTION_KEYS="short")
    assert bad.returncode == 2 and "Invalid setting DATA_ENCRYPTION_KEYS" in bad.stderr and "short" not in bad.stderr
