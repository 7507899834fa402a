"""A stopping worker does not wait for work in flight (a long meeting takes minutes): its jobs are released and
redone elsewhere, so every process pool it owns is stopped at once."""
from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from bot.pools import ended, stop_pool


def _mark_and_sleep(marker: str, seconds: float) -> None:
    """The work in flight: says it has started, then takes long."""
    Path(marker).touch()
    time.sleep(seconds)


async def _started(pool: ProcessPoolExecutor, marker: Path) -> list:
    """The pool's processes once its worker is inside the job (not still starting or loading models)."""
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert time.monotonic() < deadline, "the worker never started the job"
        await asyncio.sleep(0.05)
    return list(pool._processes.values())


async def test_stop_pool_ends_running_work_at_once(tmp_path: Path):
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    running = asyncio.get_running_loop().run_in_executor(pool, _mark_and_sleep, str(tmp_path / "started"), 600)
    processes = await _started(pool, tmp_path / "started")
    await asyncio.wait_for(asyncio.to_thread(stop_pool, pool), 60)
    assert processes and ended(processes)
    running.cancel()


async def test_local_engine_close_does_not_wait_for_a_running_job(tmp_path: Path):
    from bot.engines.local import LocalEngine
    from tests.shared_models import model_cache

    engine = LocalEngine(workers=1, model_cache=model_cache())
    running = asyncio.ensure_future(engine._run(_mark_and_sleep, str(tmp_path / "started"), 600))
    processes = await _started(engine._ensure_pool(), tmp_path / "started")
    await asyncio.wait_for(engine.close(), 120)
    assert processes and ended(processes)
    running.cancel()


PARENT = """
import multiprocessing, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from bot.pools import exit_with_parent

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent)
    pool.submit(time.sleep, 600)
    time.sleep(float(sys.argv[1]))
    print(*pool._processes, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("settle", [1.0, 0.0], ids=["busy", "still-starting"])
def test_pool_processes_end_when_their_parent_is_killed(tmp_path, settle: float):
    """A parent killed with SIGKILL (a crash, the OOM killer) runs no cleanup: its pool process, busy with work or
    still starting up, must notice on its own and end, instead of holding its memory forever."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen([sys.executable, str(script), str(settle)], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # alive while the parent lives
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 60
        while _alive(child):
            assert time.monotonic() < deadline, "the pool process outlived its killed parent"
            time.sleep(0.2)
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for our purpose (its parent is init, which reaps)
        return stat.read().split()[2] != "Z"
