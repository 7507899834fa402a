"""One CPU pool per test process (an xdist worker), shared by the applications and helpers that decode or draw:
its process starts once (about 2 s of CPU to import PyAV and matplotlib) instead of once per test. The pool's
process ends with the test process. Tests about the pool itself (a worker that dies, a stop) make their own."""
from __future__ import annotations

from bot.pools import CpuPool

_pool: CpuPool | None = None


def shared_cpu() -> CpuPool:
    """This process's shared pool (never closed by a test: it is used again by the next)."""
    global _pool
    if _pool is None:
        _pool = CpuPool()
    return _pool
