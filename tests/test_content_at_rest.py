"""Meeting content is encrypted at rest like voiceprints: the result (every recognised word), the relabels (who
spoke), the file name and the transcript's link (Slack puts the file name in it). Read straight from the
SQLite files or from PostgreSQL, none of it is in clear; rows written in plain text by older versions still
read, and `rotate-keys` encrypts them."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from bot.schema import IdentifyOutput
from storage.crypto import SEALED_PREFIX
from storage.database import Database
from storage.migrate import reencrypt_all, upgrade
from storage.recordings import claim_next, complete, enqueue_recording, get_recording, mark_posted
from storage.thread import TRANSCRIPT, end_transcript, get_output, set_relabel, start_transcript

KEY, NEXT = Fernet.generate_key().decode(), Fernet.generate_key().decode()
FILE_NAME = "Zanzibar restructuring with Quillon Marbury.m4a"
URL = "https://fake.slack.com/files/U1/F9/Transcript_of_Zanzibar_restructuring_with_Quillon_Marbury.md"
CLAIMANT = "UQUILLONMARBURY"
RESULT = IdentifyOutput.model_validate({
    "diarization": [{"speaker": "SPEAKER_00", "start": 0.0, "end": 2.0}],
    "turnLevelTranscription": [{"speaker": "SPEAKER_00", "start": 0.1, "end": 1.0,
                                "text": "Xylophonic severance figures."}],
    "wordLevelTranscription": [{"speaker": "SPEAKER_00", "start": 0.1, "end": 0.4, "text": "Xylophonic"},
                               {"speaker": "SPEAKER_00", "start": 0.4, "end": 0.7, "text": "severance"},
                               {"speaker": "SPEAKER_00", "start": 0.7, "end": 1.0, "text": "figures."}],
}).wire()
IN_CLEAR = ("Xylophonic", "severance", "Zanzibar", "Quillon", "Marbury")  # no id: the audit log keeps Slack ids
CONTENT = ("result", "relabels", "file_name")  # and the transcript's link, in `recordingoutput`
_fresh = itertools.count()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_server").create_database(f"legacy_{next(_fresh)}")


async def _finished_recording(db: Database) -> int:
    """A recording as the bot leaves it: transcribed, posted, one speaker claimed."""
    rec, _ = await enqueue_recording(db, team_id="T1", channel_id="C1", file_id="F1", file_name=FILE_NAME,
                                     uploader_id="U1", message_ts="1.1", engine="local")
    assert (await claim_next(db, "w", 60)).id == rec.id
    assert await complete(db, rec.id, "w", RESULT, 2.0)
    assert await start_transcript(db, rec.id, "w")
    assert await end_transcript(db, rec.id, "w", file_id="F9", url=URL)
    assert await mark_posted(db, rec.id, "w", "2.2")
    await set_relabel(db, rec.id, "SPEAKER_00", CLAIMANT)
    return rec.id


async def _read(db: Database, rec_id: int) -> tuple:
    rec, transcript = await get_recording(db, rec_id), await get_output(db, rec_id, TRANSCRIPT)
    return rec.result, rec.relabels, rec.file_name, transcript.url


EXPECTED = (RESULT, {"SPEAKER_00": CLAIMANT}, FILE_NAME, URL)


async def _raw_columns(db: Database) -> list[str | None]:
    async with db.engine.connect() as conn:
        content = list((await conn.execute(sa.text(f"SELECT {', '.join(CONTENT)} FROM recording"))).one())
        return [*content, (await conn.execute(sa.text("SELECT url FROM recordingoutput"))).scalar_one()]


async def _everything_stored(db: Database) -> str:
    """All the database holds, as directly as it can be read: the SQLite files (main, -wal, -shm) with the
    database open, or every PostgreSQL row of every table as text."""
    if db.dialect == "sqlite":
        path = Path(db.url.database)
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        return b"".join(f.read_bytes() for f in files if f.exists()).decode("latin-1")
    async with db.engine.connect() as conn:
        tables = (await conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars()
        rows = [(await conn.execute(sa.text(f'SELECT t::text FROM "{t}" t'))).scalars().all() for t in list(tables)]
    return "\n".join(r for table in rows for r in table)


async def test_no_transcript_word_or_name_is_stored_in_clear(db_url: str):
    db = Database(db_url, keys=[KEY])
    try:
        rec_id = await _finished_recording(db)
        assert await _read(db, rec_id) == EXPECTED
        raw = await _raw_columns(db)
        assert all(value.startswith(SEALED_PREFIX) for value in raw), raw
        assert CLAIMANT not in raw[1]
        stored = await _everything_stored(db)
        assert "SPEAKER_00" in stored or db.dialect == "sqlite"  # the PostgreSQL dump shows plain columns
        assert [word for word in IN_CLEAR if word in stored] == []
    finally:
        await db.dispose()


async def _legacy_row(url: str) -> None:
    """A recording as version 0008 stored it: JSON columns and the file name in plain text."""
    await upgrade(url, "0008_no_file_metadata")
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            table = await conn.run_sync(lambda c: sa.Table("recording", sa.MetaData(), autoload_with=c))
            now = sa.func.now() if db.dialect == "postgresql" else sa.text("CURRENT_TIMESTAMP")
            await conn.execute(table.insert().values(
                team_id="T1", channel_id="C1", file_id="F1", file_name=FILE_NAME, status="posted", engine="local",
                attempts=1, progress=1.0, result=RESULT, relabels={"SPEAKER_00": CLAIMANT}, transcript_url=URL,
                relabel_seq=1, chart_seq=0, diarize_only=False, created_at=now, updated_at=now, finished_at=now))
    finally:
        await db.dispose()
    await upgrade(url)


async def test_plain_rows_of_older_versions_read_and_rotation_encrypts_them(empty_url: str):
    url = empty_url
    await _legacy_row(url)
    db = Database(url, keys=[KEY])
    try:
        assert await _read(db, 1) == EXPECTED
        assert not any(value.startswith(SEALED_PREFIX) for value in await _raw_columns(db))
        counts = await reencrypt_all(db)
        assert counts["recording"] == 1 and counts["recordingoutput"] == 1
        assert all(value.startswith(SEALED_PREFIX) for value in await _raw_columns(db))
        assert [word for word in IN_CLEAR if word in await _everything_stored(db)] == []
    finally:
        await db.dispose()
    rotated = Database(url, keys=[NEXT, KEY])
    try:
        await reencrypt_all(rotated)
    finally:
        await rotated.dispose()
    new_only = Database(url, keys=[NEXT])
    try:
        assert await _read(new_only, 1) == EXPECTED
    finally:
        await new_only.dispose()
