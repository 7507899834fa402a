"""A real `python -m bot engine-server` killed and started again while a real `python -m bot worker` waits on
it: the worker rides out the outage (transient errors, then a retry with backoff), meets a restarted server
that forgot the job, submits it again, and the thread ends with exactly one summary and one chart. Real
processes, real engine, real speech, PostgreSQL, fake Slack Web API."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest

from storage.database import Database
from storage.migrate import upgrade
from testbed.fake_slack import BOT_USER_ID, TEAM_ID, FakeSlack, bot_settings
from tests.process_support import (
    ENGINE_API_KEY,
    child_env,
    free_port,
    start,
    start_worker,
    stop,
    wait_engine_ready,
)
from tests.slack_e2e_support import concat, enroll_readers, wait_status, wav_bytes

CHANNEL = "C0001"
READERS = {"U1688": "1688", "U1998": "1998"}

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.postgres,
    pytest.mark.speech,
]


async def test_engine_server_restart_mid_job_ends_with_one_summary(pg_url, tmp_path):
    from bot.engines.factory import make_engine
    from bot.services.context import Services
    from bot.services.recordings import store_shared_files
    from storage.crypto import new_key
    from storage.recordings import find_recording

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = child_env(tmp_path, ENGINE_DATA_DIR=str(tmp_path / "engine"), ENGINE_WORKERS="1")
    server_args = ["engine-server", "--host", "127.0.0.1", "--port", str(port)]
    server_log = tmp_path / "engine-server.log"
    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = [*READERS, BOT_USER_ID]
    await upgrade(pg_url)
    key = new_key()
    db = Database(pg_url, keys=[key])
    settings = bot_settings(fake, pg_url, engine="server", engine_url=url, engine_api_key=ENGINE_API_KEY)
    services = Services(settings=settings, db=db, engine=make_engine(settings))
    procs: list[subprocess.Popen] = []
    try:
        server = start(server_args, server_env, server_log)
        procs.append(server)
        await wait_engine_ready(url, server)
        await enroll_readers(services, READERS, tmp_path)
        f = fake.add_file("sync.wav", "audio/wav",
                          wav_bytes(concat([(r, i) for i in (3,) for r in READERS.values()], pause=0.5)))
        event = {"type": "message", "subtype": "file_share", "channel": CHANNEL, "user": "U0",
                 "ts": f"{int(time.time())}.000200", "files": [fake.file_object(f)]}
        await store_shared_files(services, event, TEAM_ID, BOT_USER_ID)
        worker = start_worker(fake, pg_url, tmp_path / "worker.log", key, ENGINE="server", ENGINE_URL=url,
                              JOB_RETRY_BASE_SECONDS="2")
        procs.append(worker)

        deadline = time.monotonic() + 120
        while not ((rec := await find_recording(db, TEAM_ID, f.id)) and rec.engine_job_id):
            assert time.monotonic() < deadline, "the worker never reached the engine"
            await asyncio.sleep(0.1)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        at_kill = await find_recording(db, TEAM_ID, f.id)
        assert at_kill.state.value == "running", "the engine server must die while the job is in it"
        await asyncio.sleep(3)  # the worker meets a dead engine server for a while
        server = start(server_args, server_env, server_log)
        procs.append(server)
        await wait_engine_ready(url, server)

        done = await wait_status(fake, db, f.id, {"posted", "failed"}, timeout=240)
        assert done.state.value == "posted", (done.error_code, done.error_message)
        assert done.attempts <= settings.job_max_attempts
        summary = await fake.one_reply(CHANNEL, event["ts"])
        assert "<@U1688>" in str(summary.blocks) and "<@U1998>" in str(summary.blocks)
        charts = [c for c in fake.calls_to("files.completeUploadExternal")
                  if c.done and c.params["thread_ts"] == event["ts"]]
        assert len(charts) == 1
        assert "Traceback" not in (tmp_path / "worker.log").read_text()
    finally:
        for proc in procs:
            stop(proc)
        await services.engine.close()
        await db.dispose()
        await fake.close()
