"""The per-recording chart-redraw lock on both databases: one holder at a time, released only once the chart
shows the latest relabel, taken over when it expires, and a holder that lost it cannot record its chart."""
from __future__ import annotations

from storage.database import Database
from storage.recordings import claim_next, complete, enqueue_recording, get_recording
from storage.thread import (
    CHART,
    chart_posted,
    get_output,
    lock_chart,
    replace_chart,
    set_relabel,
    start_chart,
    unlock_chart,
)
from tests.reliability_support import OUTPUT


async def posted_chart(db: Database) -> int:
    rec, _ = await enqueue_recording(db, team_id="T1", channel_id="C", file_id="F1", file_name="a.wav",
                                     uploader_id="U0", message_ts="1.1",
                                     engine="local")
    await claim_next(db, "w", 60)
    await complete(db, rec.id, "w", OUTPUT, 3.0)
    assert await start_chart(db, rec.id, "w")
    assert await chart_posted(db, rec.id, "w", "FCHART1", 0)
    return rec.id


async def test_one_redrawer_at_a_time_until_the_chart_shows_the_last_relabel(db: Database):
    rec_id = await posted_chart(db)
    await set_relabel(db, rec_id, "SPEAKER_01", "U2")
    assert await lock_chart(db, rec_id, "a", 60)
    assert not await lock_chart(db, rec_id, "b", 60), "a second redrawer waits for the first"
    assert await replace_chart(db, rec_id, "a", "FCHART2", 1)
    await set_relabel(db, rec_id, "SPEAKER_00", None)  # a correction while "a" holds the lock
    assert not await unlock_chart(db, rec_id, "a"), "the lock stays until the new correction is drawn"
    assert await replace_chart(db, rec_id, "a", "FCHART3", 2)
    assert await unlock_chart(db, rec_id, "a")
    rec, chart = await get_recording(db, rec_id), await get_output(db, rec_id, CHART)
    assert (chart.file_id, chart.seq, rec.relabel_seq, chart.lock_owner) == ("FCHART3", 2, 2, None)


async def test_an_expired_lock_is_taken_over_and_its_old_holder_cannot_record(db: Database):
    rec_id = await posted_chart(db)
    await set_relabel(db, rec_id, "SPEAKER_01", "U2")
    assert await lock_chart(db, rec_id, "a", -1)  # a holder that crashed: its lock has run out
    assert await lock_chart(db, rec_id, "b", 60)
    assert not await replace_chart(db, rec_id, "a", "FLATE", 1)
    assert not await unlock_chart(db, rec_id, "a", force=True)
    assert (await get_output(db, rec_id, CHART)).lock_owner == "b"


async def test_no_chart_nothing_to_lock(db: Database):
    rec, _ = await enqueue_recording(db, team_id="T1", channel_id="C", file_id="F9", file_name="a.wav",
                                     uploader_id="U0", message_ts="1.1",
                                     engine="local")
    assert not await lock_chart(db, rec.id, "a", 60)


async def test_each_upload_is_begun_once_and_only_under_the_lease(db: Database):
    from storage.thread import TRANSCRIPT, end_transcript, start_transcript

    rec, _ = await enqueue_recording(db, team_id="T1", channel_id="C", file_id="F2", file_name="a.wav",
                                     uploader_id="U0", message_ts="1.1", engine="local")
    await claim_next(db, "w", 60)
    assert not await start_chart(db, rec.id, "w"), "no chart before the result"
    await complete(db, rec.id, "w", OUTPUT, 3.0)
    assert not await start_chart(db, rec.id, "other") and not await start_transcript(db, rec.id, "other")
    assert await start_chart(db, rec.id, "w")
    assert not await start_chart(db, rec.id, "w"), "a second upload is never begun"
    assert not await chart_posted(db, rec.id, "other", "FX", 0)
    assert await chart_posted(db, rec.id, "w", "FCHART1", 0)
    assert await end_transcript(db, rec.id, "w", error="ABC123"), "recognition failed: nothing was begun"
    transcript = await get_output(db, rec.id, TRANSCRIPT)
    assert (transcript.started_at, transcript.file_id, transcript.error) == (None, None, "ABC123")
    chart = await get_output(db, rec.id, CHART)
    assert chart.started_at is not None and (chart.file_id, chart.seq) == ("FCHART1", 0)
