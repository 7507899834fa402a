"""`/enroll delete` deletes for real in the SQLite file too: SQLite leaves a deleted row's bytes in free
space until they happen to be reused, where anyone with the file (and, for sealed values, the key kept
next to it in VAR_DIR) could read them back; `secure_delete` overwrites them at once."""
from __future__ import annotations

from storage.database import Database
from storage.migrate import upgrade
from storage.voiceprints import delete_voiceprints, upsert_voiceprint
from tests.fake_slack import TEAM_ID

SECRET = "VPDELETEDVOICEPRINTMUSTNOTSTAY" * 8


async def test_a_deleted_voiceprint_leaves_no_bytes_in_the_sqlite_file(tmp_path):
    from bot.schema import utcnow

    path = tmp_path / "voiceid.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade(url)
    db = Database(url)  # no keys: the value is stored as it is, so its bytes can be looked for
    try:
        for user in ("U1", "U2"):
            await upsert_voiceprint(db, team_id=TEAM_ID, user_id=user, engine="local", model_id="m",
                                    voiceprint=SECRET + user, consent_at=utcnow(), clip_duration=10.0)
        assert await delete_voiceprints(db, TEAM_ID, "U1", actor_id="U1") == 1
    finally:
        await db.dispose()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("voiceid.db*"))
    assert (SECRET + "U2").encode() in on_disk  # the search works
    assert (SECRET + "U1").encode() not in on_disk
