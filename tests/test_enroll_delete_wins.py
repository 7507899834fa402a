"""`/enroll delete` wins over an enrollment still running, in the same process (cancelled) and in another one
(its save is refused): signed requests to the real endpoint, the fake Slack Web API, SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest

from storage.database import Database
from storage.voiceprints import (
    EnrollmentCancelled,
    delete_voiceprints,
    deletion_generation,
    get_voiceprint,
    upsert_voiceprint,
)
from testbed.fake_slack import TEAM_ID, BotUnderTest, FakeSlack, bot_settings
from tests.fake_engine import FakeEngine
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import dms, enroll, submit_enrollment

USER = "UENROLLING"
CLIP = b"RIFF a clip of the person's own voice"


@asynccontextmanager
async def bots(db: Database, n: int = 1):
    """`n` bot instances (separate processes' worth of state: own Services, own tasks) on one database."""
    fake = FakeSlack()
    await fake.start()
    engine = FakeEngine()
    settings = bot_settings(fake, db.url.render_as_string(hide_password=False))
    started = [await BotUnderTest(fake, settings, db, engine, cpu=shared_cpu()).start() for _ in range(n)]
    try:
        yield fake, engine, started
    finally:
        if engine.gate is not None:
            engine.gate.set()
        for bot in started:
            await bot.stop()
        await fake.close()


async def start_blocked_enrollment(bot: BotUnderTest, fake: FakeSlack, engine: FakeEngine, **kw) -> None:
    """Submit an enrollment and wait until it is held inside the engine, before anything is stored."""
    engine.gate, engine.voiceprint_started = asyncio.Event(), asyncio.Event()
    answer = await submit_enrollment(bot, fake, USER, CLIP, **kw)
    assert answer.get("response_action") == "update", answer
    await asyncio.wait_for(engine.voiceprint_started.wait(), 30)


async def test_delete_cancels_an_enrollment_running_in_this_process(db: Database):
    async with bots(db) as (fake, engine, [bot]):
        await start_blocked_enrollment(bot, fake, engine)
        reply = await (await bot.command(USER, "delete")).text()
        assert "cancelled by this delete" in reply and "keeps no voiceprint" in reply, reply
        engine.gate.set()
        await bot.drain()
        assert await get_voiceprint(db, TEAM_ID, USER) is None
        assert not any("voiceprint is saved" in m for m in dms(fake, USER))


async def test_delete_in_another_process_refuses_the_running_enrollments_save(db: Database):
    async with bots(db, 2) as (fake, engine, [enrolling, deleting]):
        await start_blocked_enrollment(enrolling, fake, engine)
        reply = await (await deleting.command(USER, "delete")).text()
        assert "no voiceprint to delete" in reply  # that process has nothing running to cancel
        engine.gate.set()
        told = (await fake.wait_for(lambda: dms(fake, USER), what="the enrollment's result"))[0]
        assert "not enrolled" in told and "/enroll delete" in told and "cancelled" in told, told
        await enrolling.drain()
        assert await get_voiceprint(db, TEAM_ID, USER) is None


async def test_delete_during_a_replacement_removes_both_the_old_and_the_new_voiceprint(db: Database):
    async with bots(db) as (fake, engine, [bot]):
        assert "voiceprint is saved" in await enroll(bot, fake, USER, CLIP)
        await start_blocked_enrollment(bot, fake, engine, replace=True)
        reply = await (await bot.command(USER, "delete")).text()
        assert "Your voiceprint is deleted" in reply and "cancelled by this delete" in reply, reply
        engine.gate.set()
        await bot.drain()
        assert await get_voiceprint(db, TEAM_ID, USER) is None
        # A fresh enrollment after the delete works again.
        engine.gate = None
        assert "voiceprint is saved" in await enroll(bot, fake, USER, CLIP + b"again")


async def save(db: Database, generation: int | None, user_id: str = USER):
    from storage.models import utcnow

    return await upsert_voiceprint(db, team_id=TEAM_ID, user_id=user_id, engine="fake", model_id="m",
                                   voiceprint="vp", consent_at=utcnow(), clip_duration=5.0, generation=generation)


async def test_storage_refuses_a_save_that_started_before_a_delete(db: Database):
    start = await deletion_generation(db, TEAM_ID, USER)
    assert start == 0
    await delete_voiceprints(db, TEAM_ID, USER, actor_id=USER)  # nothing stored yet: still counts
    with pytest.raises(EnrollmentCancelled):
        await save(db, start)
    assert await get_voiceprint(db, TEAM_ID, USER) is None
    again = await deletion_generation(db, TEAM_ID, USER)
    assert again == 1
    await save(db, again)
    assert await get_voiceprint(db, TEAM_ID, USER) is not None
    other = await deletion_generation(db, TEAM_ID, "UOTHER")
    await save(db, other, "UOTHER")  # someone else's delete never affects this person
    assert await get_voiceprint(db, TEAM_ID, "UOTHER") is not None


async def test_concurrent_saves_and_deletes_never_leave_a_voiceprint_saved_before_the_last_delete(db: Database):
    """Saves racing deletes: whatever the order, once the last delete has committed, no voiceprint from an
    enrollment that started before it remains."""
    async def try_save(start: int) -> None:
        try:
            await save(db, start)
        except EnrollmentCancelled:
            pass

    for _ in range(5):
        start = await deletion_generation(db, TEAM_ID, USER)
        await asyncio.gather(*(try_save(start) for _ in range(3)),
                             delete_voiceprints(db, TEAM_ID, USER, actor_id=USER), try_save(start))
        assert await get_voiceprint(db, TEAM_ID, USER) is None


async def test_uninstall_refuses_the_save_of_an_enrollment_still_running(db: Database):
    """Removing the app deletes the workspace's voiceprints: one still being made must not appear after it."""
    async with bots(db) as (fake, engine, [bot]):
        await start_blocked_enrollment(bot, fake, engine)
        started = await deletion_generation(db, TEAM_ID, USER)
        await bot.event({"type": "app_uninstalled"}, event_id="EvUninstall")
        # bolt runs the listener after the ack: release the enrollment only once the purge has committed.
        await fake.wait_for(lambda: _raised(db, started), what="the uninstall purge")
        engine.gate.set()
        await bot.drain()
        assert await get_voiceprint(db, TEAM_ID, USER) is None


async def _raised(db: Database, started: int) -> bool:
    return await deletion_generation(db, TEAM_ID, USER) > started


async def test_storage_uninstall_raises_every_members_generation(db: Database):
    from storage.workspaces import purge_workspace

    start = await deletion_generation(db, TEAM_ID, USER)
    await purge_workspace(db, TEAM_ID)
    with pytest.raises(EnrollmentCancelled):
        await save(db, start)
    assert await get_voiceprint(db, TEAM_ID, USER) is None
    await save(db, await deletion_generation(db, TEAM_ID, USER))  # after a reinstall, enrolling works again
    assert await get_voiceprint(db, TEAM_ID, USER) is not None
