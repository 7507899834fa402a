"""A stopping worker does not wait for work in flight (a long meeting takes minutes): its jobs are released and
redone elsewhere, so every process pool it owns is stopped at once."""
from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from bot.pools import stop_pool


async def _started(pool: ProcessPoolExecutor) -> list:
    deadline = time.monotonic() + 60
    while not pool._processes and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # the worker has taken the job
    return list(pool._processes.values())


async def test_stop_pool_ends_running_work_at_once():
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    running = asyncio.get_running_loop().run_in_executor(pool, time.sleep, 600)
    processes = await _started(pool)
    await asyncio.wait_for(asyncio.to_thread(stop_pool, pool), 60)
    assert processes and not any(p.is_alive() for p in processes)
    running.cancel()


async def test_local_engine_close_does_not_wait_for_a_running_job():
    from bot.engines.local import LocalEngine

    engine = LocalEngine(workers=1)
    running = asyncio.ensure_future(engine._run(time.sleep, 600))
    processes = await _started(engine._ensure_pool())
    await asyncio.wait_for(engine.close(), 120)
    assert processes and not any(p.is_alive() for p in processes)
    running.cancel()
