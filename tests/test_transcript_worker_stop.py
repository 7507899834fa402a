"""A stopping bot does not wait for a recognition in progress (a long meeting takes minutes)."""
from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from bot.speech.transcription import stop_pool


async def test_stop_pool_ends_running_work_at_once():
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    running = asyncio.get_running_loop().run_in_executor(pool, time.sleep, 60)
    deadline = time.monotonic() + 30
    while not pool._processes and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    processes = list(pool._processes.values())
    await asyncio.sleep(1.0)  # the worker has taken the job
    began = time.monotonic()
    await asyncio.to_thread(stop_pool, pool)
    assert time.monotonic() - began < 15, "stopping waited for the running work"
    assert processes and not any(p.is_alive() for p in processes)
    running.cancel()
