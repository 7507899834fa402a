"""The Slack bot on PostgreSQL: two app instances (two job runners) share one database; every recording
gets exactly one summary, named from voiceprints enrolled through /enroll. Real engine, real speech."""
from __future__ import annotations

import numpy as np
import pytest
import pytest_asyncio
from shared_models import model_cache

from storage.database import Database
from storage.migrate import upgrade
from testbed.fake_slack import BotUnderTest, FakeSlack, bot_settings
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import SR, enroll, enrollment_clip, utterance, wait_status, wav_bytes

CHANNEL = "C0001"

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.postgres,
    pytest.mark.speech,
]


def short_meeting(first: int) -> np.ndarray:
    gap = np.zeros(SR // 2, np.float32)
    return np.concatenate([x for i in range(first, first + 2) for r in ("1688", "1998")
                           for x in (utterance(r, i), gap)])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def two_bots(pg_url):
    from bot.engines.local import LocalEngine

    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = ["U1688", "U1998"]
    await upgrade(pg_url)
    db = Database(pg_url)
    engine = LocalEngine(workers=1, model_cache=model_cache())
    settings = bot_settings(fake, pg_url)
    bots = [await BotUnderTest(fake, settings, db, engine, cpu=shared_cpu()).start() for _ in range(2)]
    yield fake, db, bots
    for bot in bots:
        await bot.stop()
    await engine.close()
    await db.dispose()
    await fake.close()


async def test_two_runners_share_postgres_and_post_each_summary_once(two_bots):
    fake, db, (a, b) = two_bots
    for user, reader in (("U1688", "1688"), ("U1998", "1998")):
        assert "voiceprint is saved" in await enroll(a, fake, user, enrollment_clip([(reader, 0)]))
    files = [fake.add_file(f"sync-{i}.wav", "audio/wav", wav_bytes(short_meeting(2 + 2 * i))) for i in range(3)]
    events = [(a if i % 2 else b).share_event(f) for i, f in enumerate(files)]
    for i, event in enumerate(events):
        await (a if i % 2 else b).event(event, event_id=f"EvPg{i}")
    for f, event in zip(files, events, strict=True):
        rec = await wait_status(fake, db, f.id, {"posted", "failed"})
        assert rec.state.value == "posted", rec.error_message
        reply = await fake.one_reply(CHANNEL, event["ts"])
        assert "<@U1688>" in str(reply.blocks) and "<@U1998>" in str(reply.blocks)
        uploads = [c for c in fake.calls_to("files.completeUploadExternal") if c.params["thread_ts"] == event["ts"]]
        assert len(uploads) == 1
