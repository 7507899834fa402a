"""A shared file is never lost: each file of a message is stored before Slack's event is acknowledged, on its
own, and its progress reply is posted by the job side, so one file's trouble with Slack (a 5xx on its
progress post, a failing `files.info`) holds up no other, and a restart between the ack and the progress
post loses nothing. Signed requests to the real endpoint, the fake Slack Web API, a real SQLite file, the
real local engine on real speech (nobody enrolled: diarize-only summaries); the restart kills a real
`python -m bot serve` process with SIGKILL."""
from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from storage.crypto import new_key
from storage.database import Database
from storage.migrate import upgrade
from testbed.fake_slack import BOT_USER_ID, TEAM_ID, BotUnderTest, FakeSlack, bot_settings, signed_headers
from tests.process_support import child_env, free_port, kill_9, logs, start
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import concat, recording_for, slack_world, wav_bytes

CHANNEL = "C0001"

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.speech]


@pytest.fixture(scope="module")
def speech() -> bytes:
    """About 20 s of two readers: short, since what is tested is that each file gets its summary."""
    return wav_bytes(concat([("1688", 2), ("1998", 2)], pause=0.5))


def message(fake: FakeSlack, files: list, ts: str) -> dict:
    """One file_share message holding several files (Slack Connect stubs given as dicts)."""
    return {"type": "message", "subtype": "file_share", "channel": CHANNEL, "user": "U0", "text": "", "ts": ts,
            "files": [f if isinstance(f, dict) else fake.file_object(f) for f in files]}


def stub(file_id: str) -> dict:
    """How a file shared from another organisation (Slack Connect) appears in the event: only files.info says more."""
    return {"id": file_id, "mode": "file_access", "file_access": "check_file_info"}


async def summaries(fake: FakeSlack, db: Database, ts: str, file_ids: list[str], timeout: float = 180) -> list:
    """Waits until every file's recording is posted; returns the thread's bot messages."""
    async def posted():
        recs = [await recording_for(db, f) for f in file_ids]
        return all(r is not None and r.state.value == "posted" for r in recs)

    try:
        await fake.wait_for(posted, timeout=timeout, what="every file's summary")
    except AssertionError:
        never = [f for f in file_ids if await recording_for(db, f) is None]
        raise AssertionError(f"not every file got its summary; never stored: {never}") from None
    return fake.thread(CHANNEL, ts)


def assert_one_summary_each(thread: list, names: list[str]) -> None:
    """Exactly one bot message per file, each its summary (the progress reply edited in place)."""
    assert len(thread) == len(names), [m.text for m in thread]
    for name in names:
        [summary] = [m for m in thread if m.text.startswith(f"Speakers in {name} ")]
        assert "Speaker 1" in str(summary.blocks), summary.blocks


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(local_engine, tmp_path_factory):
    async with slack_world(local_engine, tmp_path_factory.mktemp("intake")) as w:
        w[0].members[CHANNEL] = ["U0", "U1", BOT_USER_ID]
        yield w


async def test_a_5xx_on_the_first_files_progress_post_loses_no_file(world, speech):
    fake, db, bot = world
    files = [fake.add_file(name, "audio/wav", speech) for name in ("one.wav", "two.wav", "three.wav")]
    fake.fail("chat.postMessage", lambda p: "one.wav" in p.get("text", "") and "Identifying" in p["text"], times=8)
    event = message(fake, files, "1800000001.000100")

    assert (await bot.event(event, event_id="Ev5xx")).status == 200
    for f in files:  # stored before the ack, every one of them
        assert await recording_for(db, f.id) is not None, f"{f.name} was not stored before the ack"

    thread = await summaries(fake, db, event["ts"], [f.id for f in files])
    assert_one_summary_each(thread, ["one.wav", "two.wav", "three.wav"])


async def test_a_failing_files_info_on_a_slack_connect_file_loses_no_other(world, speech):
    fake, db, bot = world
    connect = fake.add_file("partner.wav", "audio/wav", speech)
    pdf = fake.add_file("agenda.pdf", "application/pdf", b"%PDF-1.4 not a recording")
    local = fake.add_file("local.wav", "audio/wav", speech)
    fake.fail("files.info", lambda p: p.get("file") == connect.id, times=3)  # more than the client's own retries
    event = message(fake, [stub(connect.id), stub(pdf.id), local], "1800000002.000100")

    assert (await bot.event(event, event_id="EvConnect")).status == 200
    thread = await summaries(fake, db, event["ts"], [connect.id, local.id])
    assert_one_summary_each(thread, ["partner.wav", "local.wav"])
    assert await recording_for(db, pdf.id) is None, "a Slack Connect file that is not a recording is dropped"


async def test_a_restart_between_the_ack_and_the_progress_post_still_gives_every_summary(
        local_engine, speech, tmp_path: Path):
    """The first process stores the files and acks, then dies (SIGKILL) while its progress post is held in
    Slack; the post then goes through to nobody. The next process finds that reply and finishes every file."""
    fake = FakeSlack(first_id=500)
    await fake.start()
    fake.members[CHANNEL] = ["U0", BOT_USER_ID]
    url = f"sqlite+aiosqlite:///{tmp_path / 'voiceid.db'}"
    await upgrade(url)
    key = new_key()
    db = Database(url, keys=[key])
    port = free_port()
    files = [fake.add_file(name, "audio/wav", speech) for name in ("a.wav", "b.wav", "c.wav")]
    event = message(fake, files, "1800000003.000100")
    post = fake.gate("chat.postMessage", lambda p: p.get("thread_ts") == event["ts"])
    fake.gate("files.info")  # the first process's jobs get no further than their first Slack call
    first = start(["serve", "--host", "127.0.0.1", "--port", str(port)],
                  child_env(tmp_path, SLACK_BOT_TOKEN=fake.token, SLACK_SIGNING_SECRET="test-signing-secret",
                            SLACK_API_URL=fake.api_url, DATABASE_URL=url, DATA_ENCRYPTION_KEYS=key,
                            JOB_POLL_SECONDS="0.2", JOB_LEASE_SECONDS="3"), tmp_path / "serve.log")
    second = None
    try:
        body = json.dumps({"token": "x", "team_id": TEAM_ID, "api_app_id": "A0001", "type": "event_callback",
                           "event_id": "EvRestart", "event_time": int(time.time()), "event": event,
                           "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}]})
        async with aiohttp.ClientSession() as http:
            async def listening():
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    assert first.poll() is None, logs(tmp_path, "serve.log")
                    return False

            await fake.wait_for(listening, timeout=120, what="the first process to listen")
            async with http.post(f"http://127.0.0.1:{port}/slack/events", data=body.encode(),
                                 headers=signed_headers(body)) as r:
                assert r.status == 200, await r.text()
        await fake.wait_for(post.reached.is_set, timeout=60, what="a progress post from the first process")
        kill_9(first)
        for gate in fake.gates.values():
            gate.open()  # the dead process's post goes through; nobody stored its ts

        second = await BotUnderTest(fake, bot_settings(fake, url), db, local_engine, cpu=shared_cpu()).start()
        thread = await summaries(fake, db, event["ts"], [f.id for f in files])
        assert_one_summary_each(thread, ["a.wav", "b.wav", "c.wav"])
    finally:
        if first.poll() is None:
            kill_9(first)
        if second is not None:
            await second.stop()
        await db.dispose()
        await fake.close()
