"""Temporary audio lives in the bot's own folder (VAR_DIR/tmp), and what a crashed worker left there is swept
when a worker starts again — checked with real `python -m bot worker` processes, one killed mid-download."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.keys import local_key
from bot.scratch import scratch_root, sweep_scratch, temporary_dir
from storage.database import Database
from storage.migrate import upgrade
from storage.recordings import enqueue_recording
from storage.voiceprints import upsert_voiceprint
from testbed.fake_slack import TEAM_ID, FakeSlack

ROOT = Path(__file__).resolve().parents[1]
CHANNEL = "C0001"
AUDIO = b"RIFF" + bytes(4 << 20)  # 4 MB: the first half arrives, then the download hangs


def _audio_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []


async def _wait(predicate, what: str, proc=None, log_path: Path | None = None, timeout: float = 120):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := predicate()):
        if proc is not None:
            assert proc.returncode is None, log_path.read_text()
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}: " + (
            log_path.read_text() if log_path else "")
        await asyncio.sleep(0.1)
    return value


async def _worker(cwd: Path, env: dict, log_path: Path):
    with log_path.open("w") as log:
        return await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "worker", cwd=cwd, env=env,
                                                    stdout=log, stderr=subprocess.STDOUT)


async def test_a_crashed_workers_audio_is_under_var_dir_and_swept_when_a_worker_starts(tmp_path: Path):
    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = ["U1"]
    var = tmp_path / "var"
    url = f"sqlite+aiosqlite:///{var / 'voiceid.db'}"
    await upgrade(url)
    db = Database(url, keys=[local_key(var)])
    f = fake.add_file("meeting.wav", "audio/wav", AUDIO, user="U1")
    f.stall = True
    await upsert_voiceprint(db, team_id=TEAM_ID, user_id="U1", engine="local", model_id="m", voiceprint="vp",
                            consent_at=datetime.now(UTC), clip_duration=5.0)
    await enqueue_recording(db, team_id=TEAM_ID, channel_id=CHANNEL, file_id=f.id, file_name=f.name,
                            uploader_id="U1", message_ts="1.1", engine="local")
    await db.dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_", "DATA_", "ENGINE"))}
    env |= {"SLACK_BOT_TOKEN": fake.token, "SLACK_API_URL": fake.api_url, "ENGINE": "local",
            "JOB_POLL_SECONDS": "0.2", "PYTHONPATH": str(ROOT)}
    live = temporary_dir(var, "voiceid-rec-")  # a running process's download (this test's) is never swept
    (Path(live.name) / "in-progress.wav").write_bytes(b"RIFF")
    first = await _worker(tmp_path, env, tmp_path / "first.log")
    second = None
    try:
        crashed = await _wait(lambda: [p for p in _audio_files(scratch_root(var) / f"p{first.pid}") if p.stat().st_size],
                              "the download to start", first, tmp_path / "first.log")
        assert all(p.is_relative_to(var / "tmp") for p in crashed)
        first.send_signal(signal.SIGKILL)  # a crash: no context manager gets to clean up
        await first.wait()
        assert all(p.exists() for p in crashed), "the crash left its audio behind"

        second = await _worker(tmp_path, env, tmp_path / "second.log")
        await _wait(lambda: "started" in (tmp_path / "second.log").read_text(), "the second worker", second,
                    tmp_path / "second.log")
        assert not any(p.exists() for p in crashed), "the restart swept the crashed worker's audio"
        assert "left behind by a crash" in (tmp_path / "second.log").read_text()
        assert (Path(live.name) / "in-progress.wav").exists()

        fake.unstall.set()
        second.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(second.wait(), 120)
        except TimeoutError:
            raise AssertionError("the worker did not stop on SIGTERM: " + (tmp_path / "second.log").read_text())
        assert code == 0, (tmp_path / "second.log").read_text()
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
        fake.unstall.set()
        await fake.close()
    live.cleanup()
    assert _audio_files(scratch_root(var)) == [], "no audio left in the bot's own temp folder"


def test_sweep_keeps_running_processes_folders_and_clears_dead_and_stray_ones(tmp_path: Path):
    root = scratch_root(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    for name in (f"p{dead.stdout.strip()}", f"p{os.getppid()}", "voiceid-rec-legacy"):
        (root / name).mkdir(parents=True)
        (root / name / "a.wav").write_bytes(b"RIFF")
    (root / "stray.wav").write_bytes(b"RIFF")
    assert sweep_scratch(tmp_path) == 3
    assert sorted(p.name for p in root.iterdir()) == [f"p{os.getppid()}"]
    with temporary_dir(tmp_path, "voiceid-clip-") as tmp:
        assert Path(tmp).parent == root / f"p{os.getpid()}" and oct(Path(tmp).stat().st_mode & 0o777) == "0o700"
