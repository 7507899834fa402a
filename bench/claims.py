"""Claim throughput: how fast worker processes can take recordings off the queue (`python -m bench.claims`).

Seeds N queued recordings, starts the worker processes, lets them connect, then releases them together
and times until the queue is empty. PostgreSQL runs with its default (durable) settings in a throwaway
server; SQLite is the default file database in WAL mode. The first row of each backend is the baseline:
one process with one connection.

The same worker (`drain_with_processes`) backs the concurrency tests, which check that every recording
is claimed exactly once.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from storage.database import Database
from storage.models import Recording
from storage.recordings import claim_next

LEASE_SECONDS = 600


async def seed(db: Database, n: int, *, team_id: str = "T_BENCH", prefix: str = "F") -> None:
    """Queues `n` recordings in one statement (the queue's contents, not the enqueue path, are under test)."""
    rows = [Recording(team_id=team_id, channel_id="C", file_id=f"{prefix}{i:06d}", file_name=f"{i}.m4a",
                      engine="local").model_dump(exclude={"id"}) for i in range(n)]
    async with db.session() as s:
        await s.exec(insert(Recording), params=rows)
        await s.commit()


async def drain(db: Database, owner: str, coroutines: int) -> list[int]:
    """Claims until the queue is empty with `coroutines` concurrent claimers; returns the ids claimed."""
    claimed: list[int] = []

    async def claimer() -> None:
        while (rec := await claim_next(db, owner, LEASE_SECONDS)) is not None:
            claimed.append(rec.id)

    await asyncio.gather(*(claimer() for _ in range(coroutines)))
    return claimed


async def _worker_main(url: str, owner: str, coroutines: int, start: Any) -> tuple[list[int], float, float]:
    db = Database(url, pool_size=coroutines, max_overflow=0)
    try:
        async with db.engine.connect() as conn:  # connect before the clock starts
            await conn.execute(text("SELECT 1"))
        start.wait()
        began = time.monotonic()
        ids = await drain(db, owner, coroutines)
        return ids, began, time.monotonic()
    finally:
        await db.dispose()


def _worker(url: str, owner: str, coroutines: int, start: Any, results: Any) -> None:
    try:
        results.put(asyncio.run(_worker_main(url, owner, coroutines, start)))
    except BaseException as exc:  # the parent must hear about it rather than wait forever
        results.put(exc)
        raise


@dataclass(frozen=True)
class DrainRun:
    claimed: list[list[int]]  # ids claimed, per process
    seconds: float

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.claimed)


def drain_with_processes(url: str, processes: int, coroutines: int = 1, timeout: float = 300) -> DrainRun:
    """Runs `processes` OS processes (spawned: no inherited connections) that drain the queue together."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(processes + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, f"bench-{i}", coroutines, start, results), daemon=True)
             for i in range(processes)]
    for p in procs:
        p.start()
    try:
        start.wait(timeout=timeout)
        outcomes = [results.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        raise RuntimeError(f"a claim worker failed: {errors[0]!r}") from errors[0]
    began, ended = min(o[1] for o in outcomes), max(o[2] for o in outcomes)
    return DrainRun(claimed=[o[0] for o in outcomes], seconds=ended - began)


async def _fresh(url: str, n: int) -> None:
    from storage.migrate import upgrade

    await upgrade(url)
    db = Database(url)
    try:
        async with db.session() as s:
            await s.exec(text("DELETE FROM recording"))
            await s.commit()
        await seed(db, n)
    finally:
        await db.dispose()


def measure(backend: str, url: str, n: int, processes: int, coroutines: int) -> dict[str, Any]:
    asyncio.run(_fresh(url, n))
    run = drain_with_processes(url, processes, coroutines)
    ids = [i for per in run.claimed for i in per]
    assert len(ids) == len(set(ids)) == n, f"{backend}: claimed {len(ids)} ({len(set(ids))} distinct) of {n}"
    return {"backend": backend, "processes": processes, "coroutines": coroutines, "claims": n,
            "seconds": run.seconds, "claims_per_s": n / run.seconds}


def print_table(rows: list[dict[str, Any]]) -> None:
    header = f"{'backend':<11} {'processes':>9} {'coroutines/proc':>15} {'claims':>7} {'seconds':>8} {'claims/s':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['backend']:<11} {r['processes']:>9} {r['coroutines']:>15} {r['claims']:>7} "
              f"{r['seconds']:>8.2f} {r['claims_per_s']:>9.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.claims", description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="recordings to claim per run (default 2000)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--postgres-url", help="use this PostgreSQL database instead of a throwaway server")
    args = parser.parse_args(argv)

    plan = [(1, 1), (args.processes, 1), (args.processes, 4)]
    rows: list[dict[str, Any]] = []
    server = None
    pg_url = args.postgres_url
    if not pg_url:
        from testbed.postgres import PostgresServer, PostgresUnavailable

        try:
            server = PostgresServer(fast=False).start()
            pg_url = server.create_database("bench_claims")
        except PostgresUnavailable as exc:
            print(f"PostgreSQL rows skipped: {exc}", file=sys.stderr)
    try:
        if pg_url:
            rows += [measure("postgresql", pg_url, args.n, p, c) for p, c in plan]
        with tempfile.TemporaryDirectory() as tmp:
            sqlite_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            rows += [measure("sqlite", sqlite_url, args.n, p, c) for p, c in plan]
    finally:
        if server:
            server.stop()
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
