"""Several workers, one queue: every recording is claimed exactly once, on SQLite and PostgreSQL.

4 OS processes drain 120 recordings; then every lease expires (as if all workers crashed), the queue is
re-drained by 4 connections × 40 coroutines, and when the leases expire again with the attempts used
up every recording ends `failed` with its `lease_expired` error — none is lost.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from sqlmodel import select

from bench.claims import LEASE_SECONDS, drain, drain_with_processes, seed
from storage.database import Database
from storage.models import Recording, RecordingStatus, utcnow
from storage.recordings import LEASE_EXPIRED, count_by_status, enqueue_recording, requeue_expired

N = 120


def assert_each_once(claimed: list[int], all_ids: set[int]) -> None:
    repeats = {i: n for i, n in Counter(claimed).items() if n > 1}
    assert not repeats, f"claimed more than once: {repeats}"
    assert set(claimed) == all_ids, f"never claimed: {sorted(all_ids - set(claimed))[:10]}"


async def all_rows(db: Database) -> list[Recording]:
    async with db.session() as s:
        return list((await s.exec(select(Recording))).all())


async def test_workers_claim_each_recording_exactly_once(db_url: str):
    db = Database(db_url, pool_size=4, max_overflow=0)
    try:
        await seed(db, N)
        ids = {r.id for r in await all_rows(db)}

        run = await asyncio.to_thread(drain_with_processes, db_url, 4)
        assert_each_once([i for per in run.claimed for i in per], ids)
        assert sum(1 for per in run.claimed if per) >= 2, "the work should be shared between processes"
        assert (await count_by_status(db))["running"] == N

        assert await requeue_expired(db, max_attempts=3, now=utcnow() + timedelta(seconds=LEASE_SECONDS + 1)) == N
        assert_each_once(await drain(db, "survivor", coroutines=40), ids)
        rows = await all_rows(db)
        assert {(r.status, r.attempts, r.lease_owner) for r in rows} == {(RecordingStatus.running, 2, "survivor")}

        assert await requeue_expired(db, max_attempts=2, now=utcnow() + timedelta(seconds=LEASE_SECONDS + 1)) == N
        rows = await all_rows(db)
        assert {(r.status, r.error_code) for r in rows} == {(RecordingStatus.failed, LEASE_EXPIRED)}
    finally:
        await db.dispose()


async def test_concurrent_duplicate_events_create_one_recording(db: Database):
    async def event() -> tuple[Recording, bool]:
        return await enqueue_recording(db, team_id="T1", channel_id="C1", file_id="F_DUP", file_name="a.m4a",
                                       uploader_id="U1", message_ts="1.1",
                                       engine="local")

    results = await asyncio.gather(*(event() for _ in range(10)))
    assert sum(created for _, created in results) == 1
    assert len({rec.id for rec, _ in results}) == 1
    assert len(await all_rows(db)) == 1
