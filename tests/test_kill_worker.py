"""`kill -9` of a real `python -m bot worker` process while it waits on the engine, with the default lease:
the other worker process on the same PostgreSQL takes the recording over within 60 s and the thread ends
with exactly one summary and one chart. Real processes, real engine, real speech, fake Slack Web API.
The other stages (and this one with the engine server, whose job outlives the worker): test_kill_stages.py."""
from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from storage.crypto import new_key
from storage.database import Database
from storage.migrate import upgrade
from testbed.fake_slack import BOT_USER_ID, TEAM_ID, FakeSlack, bot_settings
from tests.process_support import kill_9, lease_holder, logs, start_worker, stop, wait_started, wait_takeover
from tests.slack_e2e_support import concat, enroll_readers, wait_status, wav_bytes

CHANNEL = "C0001"
READERS = {"U1688": "1688", "U1998": "1998"}

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.postgres,
    pytest.mark.speech,
]


async def test_kill_9_while_waiting_is_taken_over_within_a_minute(pg_url, local_engine, tmp_path):
    from bot.services.context import Services
    from bot.services.recordings import store_shared_files
    from storage.recordings import find_recording

    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = [*READERS, BOT_USER_ID]
    await upgrade(pg_url)
    key = new_key()  # PostgreSQL workers refuse to start without one
    db = Database(pg_url, keys=[key])
    services = Services(settings=bot_settings(fake, pg_url), db=db, engine=local_engine)
    workers: list[subprocess.Popen] = []
    try:
        await enroll_readers(services, READERS, tmp_path)
        f = fake.add_file("sync.wav", "audio/wav",
                          wav_bytes(concat([(r, i) for i in (3, 4, 5) for r in READERS.values()], pause=0.5)))
        event = {"type": "message", "subtype": "file_share", "channel": CHANNEL, "user": "U0",
                 "ts": f"{int(time.time())}.000100", "files": [fake.file_object(f)]}
        await store_shared_files(services, event, TEAM_ID, BOT_USER_ID)
        worker_logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
        workers = [start_worker(fake, pg_url, path, key, ENGINE="local") for path in worker_logs]

        deadline = time.monotonic() + 240
        while not ((rec := await find_recording(db, TEAM_ID, f.id)) and rec.engine_job_id):
            assert time.monotonic() < deadline, f"no worker reached the engine\n{logs(tmp_path)}"
            await asyncio.sleep(0.1)
        await wait_started(workers, worker_logs)  # the other worker is up: it takes over when the lease expires
        killed_at = kill_9(lease_holder(workers, rec.lease_owner))

        now, takeover = await wait_takeover(db, f.id, rec.lease_owner, killed_at)
        print(f"\nengine wait (embedded engine): taken over {takeover:.1f} s after the kill")
        assert takeover < 60, f"taken over {takeover:.0f} s after the kill"
        done = await wait_status(fake, db, f.id, {"posted", "failed"}, timeout=300)
        assert done.state.value == "posted", done.error_message
        assert now.attempts == 2
        summary = await fake.one_reply(CHANNEL, event["ts"])
        assert "<@U1688>" in str(summary.blocks) and "<@U1998>" in str(summary.blocks)
        charts = [c for c in fake.calls_to("files.completeUploadExternal") if c.params["thread_ts"] == event["ts"]]
        assert len(charts) == 1
    finally:
        for w in workers:
            stop(w)
        await db.dispose()
        await fake.close()
