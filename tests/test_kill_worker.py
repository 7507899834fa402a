"""`kill -9` of a real `python -m bot worker` process while it waits on the engine, with the default lease:
the other worker process on the same PostgreSQL takes the recording over within 60 s and the thread ends
with exactly one summary and one chart. Real processes, real engine, real speech, fake Slack Web API."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.crypto import new_key
from storage.database import Database
from storage.migrate import upgrade
from tests.fake_slack import BOT_USER_ID, TEAM_ID, FakeSlack, bot_settings
from tests.slack_e2e_support import DATA, concat, utterance, wait_status, wav_bytes

CHANNEL = "C0001"
READERS = {"U1688": "1688", "U1998": "1998"}

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.postgres,
    pytest.mark.speech,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"real speech not found at {DATA} (see its README)"),
]


def worker_logs(tmp_path: Path) -> str:
    """The workers' own words, for a failure message."""
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(tmp_path.glob("worker-*.log")))


def start_worker(fake: FakeSlack, db_url: str, log_path: Path, key: str) -> subprocess.Popen:
    """`python -m bot worker` with the default lease; output to a file so a chatty worker never blocks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_", "ENGINE", "JOB_"))}
    env |= {"SLACK_BOT_TOKEN": fake.token, "SLACK_API_URL": fake.api_url, "DATABASE_URL": db_url, "ENGINE": "local",
            "DATA_ENCRYPTION_KEYS": key,  # PostgreSQL needs a key from the environment
            "JOB_POLL_SECONDS": "0.5", "TRANSCRIPT": "off", "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "TMPDIR": str(log_path.parent)}  # a killed worker leaves its temporary audio here, not in the shared tmp
    with log_path.open("w") as log:
        return subprocess.Popen([sys.executable, "-m", "bot", "worker"], cwd=log_path.parent, env=env, stdout=log,
                                stderr=subprocess.STDOUT)


async def test_kill_9_while_waiting_is_taken_over_within_a_minute(pg_url, local_engine, tmp_path):
    from bot.services.context import Services
    from bot.services.recordings import accept_recordings
    from bot.services.voiceprints import voiceprint_from_path
    from bot.slack_api.client import make_client
    from storage.models import utcnow
    from storage.recordings import find_recording
    from storage.voiceprints import upsert_voiceprint

    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = [*READERS, BOT_USER_ID]
    await upgrade(pg_url)
    key = new_key()  # PostgreSQL workers refuse to start without one
    db = Database(pg_url, keys=[key])
    services = Services(settings=bot_settings(fake, pg_url), db=db, engine=local_engine)
    workers: list[subprocess.Popen] = []
    try:
        for user, reader in READERS.items():
            clip = tmp_path / f"{user}.wav"
            clip.write_bytes(wav_bytes(utterance(reader, 0)))
            vp = await voiceprint_from_path(services, clip)
            await upsert_voiceprint(db, team_id=TEAM_ID, user_id=user, engine="local", model_id=vp.model_id,
                                    voiceprint=vp.voiceprint, consent_at=utcnow(), clip_duration=vp.clip_duration)
        f = fake.add_file("sync.wav", "audio/wav",
                          wav_bytes(concat([(r, i) for i in (3, 4, 5) for r in READERS.values()], pause=0.5)))
        event = {"type": "message", "subtype": "file_share", "channel": CHANNEL, "user": "U0",
                 "ts": f"{int(time.time())}.000100", "files": [fake.file_object(f)]}
        await accept_recordings(services, event, TEAM_ID, make_client(services.settings, fake.token), BOT_USER_ID)
        workers = [start_worker(fake, pg_url, tmp_path / f"worker-{i}.log", key) for i in range(2)]

        deadline = time.monotonic() + 240
        while not ((rec := await find_recording(db, TEAM_ID, f.id)) and rec.engine_job_id):
            assert time.monotonic() < deadline, f"no worker reached the engine\n{worker_logs(tmp_path)}"
            await asyncio.sleep(0.1)
        victim = next(w for w in workers if f":{w.pid}:" in rec.lease_owner)
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait(10)

        while (now := await find_recording(db, TEAM_ID, f.id)).lease_owner in (rec.lease_owner, None):
            assert not now.state.final and time.monotonic() - killed_at < 120, (now.status, now.lease_owner)
            await asyncio.sleep(0.2)
        takeover = time.monotonic() - killed_at
        assert takeover < 60, f"taken over {takeover:.0f} s after the kill"
        done = await wait_status(fake, db, f.id, {"posted", "failed"}, timeout=300)
        assert done.state.value == "posted", done.error_message
        assert now.attempts == 2
        [summary] = fake.thread(CHANNEL, event["ts"])
        assert "<@U1688>" in str(summary.blocks) and "<@U1998>" in str(summary.blocks)
        charts = [c for c in fake.calls_to("files.completeUploadExternal") if c.params["thread_ts"] == event["ts"]]
        assert len(charts) == 1
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(60)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        await db.dispose()
        await fake.close()
