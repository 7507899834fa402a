"""Process pools that stop at once: a stopping worker releases its jobs, so work in flight is not waited for."""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Shuts `pool` down without waiting for running work: its processes are terminated (3.11 has no public
    way; `_processes` is the executor's own table of them), then reaped. `shutdown(wait=False)` alone is not
    enough: the interpreter joins the executor's thread at exit, which waits for the running task."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(10)
        if process.is_alive():  # still starting up under load, or stuck in native code: no second chance
            process.kill()
            process.join(10)
