"""Deleted means gone from the SQLite files too, while the database is open and encryption is on.

SQLite keeps a deleted row's bytes in two places: free space in the main file (until reused; `secure_delete`
zeroes it) and the page images of the write-ahead log (`-wal`, until a checkpoint folds and truncates it).
Anyone with a copy of the files (and, for sealed values, the key often kept beside them in VAR_DIR) could read
them back. So every deletion path — `/enroll delete`, an uninstall's purge, the retention purge of a
transcript, a re-enrollment that replaces a voiceprint — must leave neither the ciphertext nor the plain text in `db`, `-wal` or `-shm`, read while the
bot still has the database open (no `dispose()` to fold the log in for us)."""
from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from bot.schema import IdentifyOutput
from storage.database import Database
from storage.migrate import reencrypt_all
from storage.models import utcnow
from storage.recordings import claim_next, complete, enqueue_recording, update_where
from storage.retention import purge_expired
from storage.voiceprints import delete_voiceprints, upsert_voiceprint
from storage.workspaces import purge_workspace

KEY = Fernet.generate_key().decode()
GONE, KEPT = "T1", "T2"
CHUNK = 40  # any run of this many stored characters found in the files counts as a leak


def _voiceprint() -> str:
    """About the size of a real one, larger than a page once sealed (so overflow pages are exercised too)."""
    return base64.urlsafe_b64encode(os.urandom(4000)).decode()


def _words() -> str:
    return " ".join(base64.b32encode(os.urandom(10)).decode() for _ in range(200))


def _found(files: bytes, value: str) -> bool:
    """Whether any piece of `value` is in the files (a value on overflow pages is split across pages)."""
    return any(value[i:i + CHUNK].encode() in files for i in range(0, len(value) - CHUNK + 1, CHUNK // 2))


def _files(db: Database) -> bytes:
    path = Path(db.url.database)
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


async def _stored(db: Database, sql: str, **params: str) -> str:
    async with db.engine.connect() as conn:
        return (await conn.execute(sa.text(sql), params)).scalar_one()


async def _voiceprints(db: Database) -> list[tuple[str, str]]:
    """(plain, sealed) of a voiceprint in each workspace; the first is deleted by the test."""
    stored = []
    for team in (GONE, KEPT):
        plain = _voiceprint()
        await upsert_voiceprint(db, team_id=team, user_id="U1", engine="local", model_id="m", voiceprint=plain,
                                consent_at=utcnow(), clip_duration=10.0)
        stored.append((plain, await _stored(db, "SELECT voiceprint FROM voiceprint WHERE team_id = :t", t=team)))
    return stored


async def _results(db: Database) -> list[tuple[str, str]]:
    """(words, sealed result) of a transcribed recording in each workspace; the first one's has expired."""
    stored = []
    for n, team in enumerate((GONE, KEPT)):
        words = _words()
        result = IdentifyOutput.model_validate({
            "diarization": [{"speaker": "SPEAKER_00", "start": 0.0, "end": 2.0}],
            "turnLevelTranscription": [{"speaker": "SPEAKER_00", "start": 0.0, "end": 2.0, "text": words}]}).wire()
        rec, _ = await enqueue_recording(db, team_id=team, channel_id="C", file_id=f"F{n}", file_name="a.m4a",
                                         uploader_id="U1", message_ts="1.1", engine="local")
        assert (await claim_next(db, "w", 60)).id == rec.id
        assert await complete(db, rec.id, "w", result, 2.0)
        if team == GONE:
            assert await update_where(db, rec.id, finished_at=utcnow() - timedelta(days=40))
        stored.append((words, await _stored(db, "SELECT result FROM recording WHERE team_id = :t", t=team)))
    return stored


Deletion = Callable[[Database], Awaitable[object]]
CASES: dict[str, tuple[Callable[[Database], Awaitable[list[tuple[str, str]]]], Deletion]] = {
    "enroll delete": (_voiceprints, lambda db: delete_voiceprints(db, GONE, "U1", actor_id="U1")),
    "uninstall": (_voiceprints, lambda db: purge_workspace(db, GONE)),
    "re-enrollment replacing it": (_voiceprints, lambda db: upsert_voiceprint(
        db, team_id=GONE, user_id="U1", engine="local", model_id="m", voiceprint="new" * 40, consent_at=utcnow(),
        clip_duration=10.0)),
    "retention": (_results, lambda db: purge_expired(db, result_days=30, audit_days=365)),
}


@pytest.mark.parametrize("case", CASES)
async def test_deleted_data_leaves_no_bytes_in_the_open_sqlite_files(case: str, tmp_path: Path, _sqlite_head: Path):
    path = tmp_path / "voiceid.db"
    shutil.copyfile(_sqlite_head, path)
    store, delete = CASES[case]
    db = Database(f"sqlite+aiosqlite:///{path}", keys=[KEY])
    try:
        (gone_plain, gone_sealed), (kept_plain, kept_sealed) = await store(db)
        assert gone_sealed.startswith("fernet:") and _found(_files(db), gone_sealed)  # the search works
        await delete(db)
        files = _files(db)
        assert _found(files, kept_sealed), "the other workspace's data is still there"
        assert not _found(files, gone_sealed), f"{case}: the deleted ciphertext is still in the files"
        assert not _found(files, gone_plain) and not _found(files, kept_plain), "stored in clear"
    finally:
        await db.dispose()


async def test_rotating_keys_leaves_no_old_ciphertext_in_the_open_sqlite_files(tmp_path: Path, _sqlite_head: Path):
    """`rotate-keys` rewrites every sealed value with the new key: the old key's ciphertext must not stay in the
    files (whoever holds the retired key, or a backup of it, could still open it)."""
    path = tmp_path / "voiceid.db"
    shutil.copyfile(_sqlite_head, path)
    old = Database(f"sqlite+aiosqlite:///{path}", keys=[KEY])
    try:
        stored = await _voiceprints(old)
    finally:
        await old.dispose()
    db = Database(f"sqlite+aiosqlite:///{path}", keys=[Fernet.generate_key().decode(), KEY])
    try:
        assert all(_found(_files(db), sealed) for _, sealed in stored)
        assert (await reencrypt_all(db))["voiceprint"] == 2
        files = _files(db)
        for team, (plain, sealed) in zip((GONE, KEPT), stored, strict=True):
            assert not _found(files, sealed), "the old key's ciphertext is still in the files"
            assert _found(files, await _stored(db, "SELECT voiceprint FROM voiceprint WHERE team_id = :t", t=team))
            assert not _found(files, plain)
    finally:
        await db.dispose()
