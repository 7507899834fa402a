"""`python -m bot serve --no-jobs` (the scale-out layout's Slack front, README *Running in production*): it takes a
shared recording and queues it, and the job is claimed by a `python -m bot worker` started afterwards, never by
serve. Real processes on PostgreSQL, the fake Slack Web API; the worker is held at its first Slack call after the
claim (conversations.members) so the lease holder can be read, and needs no engine to get there."""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from storage.crypto import new_key
from storage.database import Database
from testbed.fake_slack import BOT_USER_ID, SIGNING_SECRET, TEAM_ID, FakeSlack
from tests.process_support import RemoteBot, child_env, free_port, logs, start, start_worker, stop

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres]

CHANNEL = "C0001"


async def until(check, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
    return result


async def test_a_no_jobs_serve_queues_and_a_worker_claims(pg_url, tmp_path):
    from storage.recordings import find_recording

    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = ["U1", BOT_USER_ID]
    gate = fake.gate("conversations.members")
    key = new_key()
    db = Database(pg_url, keys=[key])
    port = free_port()
    engine = {"ENGINE": "server", "ENGINE_URL": f"http://127.0.0.1:{free_port()}"}  # never reached here
    serve = start(["serve", "--no-jobs"], child_env(
        tmp_path, SLACK_BOT_TOKEN=fake.token, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=fake.api_url,
        DATABASE_URL=pg_url, DATA_ENCRYPTION_KEYS=key, HOST="127.0.0.1", PORT=str(port), JOB_POLL_SECONDS="0.2",
        **engine), tmp_path / "serve.log")
    worker = None
    bot = RemoteBot(fake, f"http://127.0.0.1:{port}")
    try:
        async def listening():
            assert serve.poll() is None, logs(tmp_path, "serve.log")
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{bot.base}/healthz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await until(listening, "serve to listen")
        f = fake.add_file("standup.wav", "audio/wav", b"RIFF" + b"\0" * 4000)
        assert (await bot.event(bot.share_event(f, channel=CHANNEL), event_id="EvNoJobs")).status == 200
        queued = await until(lambda: find_recording(db, TEAM_ID, f.id), "the recording row")
        assert queued.state.value == "queued" and queued.lease_owner is None

        worker = start_worker(fake, pg_url, tmp_path / "worker.log", key, **engine)
        await until(lambda: asyncio.sleep(0, gate.reached.is_set()), "a claim", timeout=180)
        held = await find_recording(db, TEAM_ID, f.id)
        assert held.state.value == "running" and held.attempts == 1
        assert f":{worker.pid}:" in held.lease_owner, held.lease_owner  # the worker's, not serve's
        assert "jobs are left to the workers" in (tmp_path / "serve.log").read_text()
    finally:
        gate.open()
        for proc in (worker, serve):
            if proc is not None:
                stop(proc)
        await db.dispose()
        await fake.close()
