"""Process pools that stop at once (a stopping worker releases its jobs, so work in flight is not waited for),
pool processes that end with their parent (a parent killed by the OOM killer or `kill -9` would otherwise
leave them running with their models loaded, hundreds of MB each, for good), and the one kind of task set
every long-lived object keeps its background tasks in, and the CPU pool (`CpuPool`)."""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class TaskSet:
    """Background tasks an object starts and must account for: held by strong references (the event loop keeps
    only weak ones, so an unheld task can vanish mid-run), a crash logged rather than lost, and one place that
    cancels and awaits them all. `on_done` runs after each task ends (e.g. a runner looks for more work)."""

    def __init__(self, on_done: Callable[[asyncio.Task], None] | None = None):
        self._tasks: set[asyncio.Task] = set()
        self._on_done = on_done

    def spawn(self, coro: Coroutine, *, name: str | None = None) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())
        if self._on_done is not None:
            self._on_done(task)

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task]:
        return iter(list(self._tasks))

    async def wait(self) -> None:
        """Until every task running now (and any they start here meanwhile) has ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel(self) -> None:
        """Cancels every task and waits until they have all ended (a task may catch one cancellation to
        finish a step, so cancelling repeats until none is left)."""
        while self._tasks:
            running = list(self._tasks)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)


class CpuPool:
    """CPU-bound work (decoding, drawing) in a one-process pool, so acks never wait behind it; the process starts
    with the first task. A pool whose worker died (the OOM killer) is replaced and the work tried once more in
    the new one."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        for tries_left in (1, 0):
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=exit_with_parent)
            pool = self._pool
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
            except BrokenProcessPool:
                if self._pool is pool:
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
                log.warning("the CPU pool's worker stopped unexpectedly; %s", "retrying in a new one" if tries_left
                            else "giving up on this task")
                if not tries_left:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Stops the process at once (see `stop_pool`); a later `run` would start a new one."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(stop_pool, pool)


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Shuts `pool` down without waiting for running work: its processes are terminated (3.11 has no public
    way; `_processes` is the executor's own table of them), then reaped. `shutdown(wait=False)` alone is not
    enough: the interpreter joins the executor's thread at exit, which waits for the running task.

    A process's end is read from its sentinel, not `is_alive()`: the executor's thread waits on the same
    processes, and when its `waitpid` takes a child's status first, `is_alive()` reads True for a moment."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        if not ended([process], 10):  # still starting up under load, or stuck in native code: no second chance
            process.kill()
            ended([process], 10)
        process.join(1)


def ended(processes: list, timeout: float = 0.0) -> bool:
    """True once every one of `processes` has exited (waiting up to `timeout` seconds)."""
    from multiprocessing.connection import wait

    pending = [p.sentinel for p in processes]
    return len(wait(pending, timeout)) == len(pending) if pending else True


def exit_with_parent() -> None:
    """Call in a pool process (its initializer): a daemon thread ends the process once its parent is gone. It
    waits on the sentinel multiprocessing gives every spawned child (a pipe the parent holds open), so a parent
    that died while the child was still starting is noticed too — `os.getppid()` would already name init then.
    Not PR_SET_PDEATHSIG: that signal follows the parent *thread*, and executors start processes from short-lived
    threads."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
