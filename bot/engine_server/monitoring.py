"""The engine server's own metrics and probes: its queue, running jobs, real-time factor and recognizer, read
from its memory at scrape time, and whether it can take jobs (`/readyz`). The probes answer without the API key
(a load balancer sends none); `/metrics` is served apart, on `METRICS_PORT` (`bot.metrics`)."""
from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric

from bot.engine_server.store import JobRecord
from bot.metrics import RTF, SECONDS, gauge, probe_routes, process_registry
from bot.schema import JobStatus

if TYPE_CHECKING:
    from bot.engine_server.app import EngineServer

PROBES = frozenset({"/healthz", "/readyz"})
CHECK_SECONDS = 5.0

SERVER = process_registry()
SERVER_JOBS = Counter("voiceid_engine_server_jobs", "Jobs the engine server ran to their end, by kind and status",
                      ["kind", "status"], registry=SERVER)
SERVER_JOB_SECONDS = Histogram("voiceid_engine_server_job_seconds", "An engine server job's run, from its start "
                               "to its end (transcription included)", ["kind"], buckets=SECONDS, registry=SERVER)
SERVER_JOB_RTF = Histogram("voiceid_engine_server_job_rtf", "Real-time factor of a succeeded engine server job: "
                           "its run over the media's length", ["kind"], buckets=RTF, registry=SERVER)
SERVER_REJECTED = Counter("voiceid_engine_server_rejected", "Job submissions refused with 429 (queue full)",
                          registry=SERVER)


def job_ended(record: JobRecord, status: JobStatus, output: dict | None) -> None:
    """A job this server ran has ended: counted, timed, and its real-time factor when the media's length is known."""
    SERVER_JOBS.labels(record.kind, status.value).inc()
    if record.started_at is None:
        return
    seconds = max(0.0, time.time() - record.started_at)
    SERVER_JOB_SECONDS.labels(record.kind).observe(seconds)
    duration = (output or {}).get("duration")
    if status is JobStatus.succeeded and isinstance(duration, int | float) and duration > 0:
        SERVER_JOB_RTF.labels(record.kind).observe(seconds / duration)


def rejected() -> None:
    SERVER_REJECTED.inc()


def gauges(server: EngineServer) -> list[Metric]:
    active = server.store.active()
    running = sum(1 for r in active if r.job.status is JobStatus.running)
    return [
        gauge("voiceid_engine_server_queued", "Jobs waiting for a worker", samples=[((), len(active) - running)]),
        gauge("voiceid_engine_server_running", "Jobs running now", samples=[((), running)]),
        gauge("voiceid_engine_server_workers", "Jobs this server runs at once", samples=[((), server.workers)]),
        gauge("voiceid_engine_server_queue_limit", "Waiting jobs beyond the workers before it answers 429",
              samples=[((), server.limits.queue_size)]),
        gauge("voiceid_engine_server_recognizer_busy", "1 while the speech recognizer transcribes a job",
              samples=[((), 1 if server.transcriber.busy else 0)]),
    ]


async def readiness(server: EngineServer) -> tuple[bool, dict[str, str]]:
    """The engine's workers alive and the data directory writable (queue length is in the metrics: a busy
    server stays ready, as its clients poll their jobs on it)."""
    try:
        problem = await asyncio.wait_for(server.engine.ready(), CHECK_SECONDS)
    except TimeoutError:
        problem = "no answer"
    writable = await asyncio.to_thread(os.access, server.store.jobs_dir, os.W_OK)
    checks = {"engine": problem or "ok", "data": "ok" if writable else "not writable"}
    return all(state == "ok" for state in checks.values()), checks


def routes(server: EngineServer) -> list[web.RouteDef]:
    """`/healthz` and `/readyz` on the server's own listener."""
    return probe_routes(lambda: readiness(server))


async def collect(server: EngineServer) -> list[Metric]:
    return gauges(server)
