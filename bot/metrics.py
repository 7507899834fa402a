"""This process's metrics in the Prometheus format (prometheus-client), and the small listener that serves them.

Counters and histograms are per process: `serve`, each `worker` and each engine server count what they did
themselves and serve their own `/metrics` on `METRICS_PORT` (bound to `METRICS_HOST`, this machine only by
default; with `METRICS_TOKEN` a scrape must send it as a bearer token), never on the public Slack listener.
Gauges read from the database are cluster-wide: built at scrape time by `bot.services.monitoring` and served
by `serve` processes only. The listener also answers `/healthz` and `/readyz`, for processes (workers) that have
no other. Counting happens at the edges (jobs, adapters), never inside the computation.
"""
from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from bot.schema import Job, JobStatus

log = logging.getLogger(__name__)
disable_created_metrics()  # no `_created` twin of every counter and histogram


def process_registry() -> CollectorRegistry:
    """A registry holding the process's own figures (memory, CPU, open files, GC) and nothing else yet."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


SECONDS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
RTF = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0)
ENROLLMENT_OUTCOMES = ("saved", "replaced", "refused", "failed", "cancelled")

# -- the bot (serve and worker); the engine server's are in `bot.engine_server.monitoring` -------------------
BOT = process_registry()
UPLOAD_TO_SUMMARY = Histogram("voiceid_upload_to_summary_seconds", "From a shared file's arrival to its summary "
                              "in the thread (first run; not Identify again)", buckets=SECONDS, registry=BOT)
UPLOAD_TO_TRANSCRIPT = Histogram("voiceid_upload_to_transcript_seconds", "From a shared file's arrival to its "
                                 "transcript files in the thread", buckets=SECONDS, registry=BOT)
ENGINE_JOB_SECONDS = Histogram("voiceid_engine_job_seconds", "An engine job this process submitted for a "
                               "recording, from submission to its end (queueing and polling included)",
                               ["engine", "kind"], buckets=SECONDS, registry=BOT)
ENGINE_JOB_RTF = Histogram("voiceid_engine_job_rtf", "Real-time factor of a succeeded engine job: its seconds "
                           "over the media's", ["engine", "kind"], buckets=RTF, registry=BOT)
JOB_FAILURES = Counter("voiceid_job_failures", "Jobs that ended failed, by failure code (a recording when its "
                       "failure is shown)", ["job", "code"], registry=BOT)
JOB_RETRIES = Counter("voiceid_job_retries", "Failed attempts that will be tried again, by failure code",
                      ["job", "code"], registry=BOT)
LEASE_TAKEOVERS = Counter("voiceid_lease_takeovers", "Expired leases this process gave back to the queue (their "
                          "worker stopped responding), so another worker takes the job over", ["job"], registry=BOT)
SLACK_API_ERRORS = Counter("voiceid_slack_api_errors", "Slack Web API answers 429 or 5xx, every attempt",
                           ["method", "status"], registry=BOT)
ENROLLMENTS = Counter("voiceid_enrollments", "Enrollment jobs by outcome", ["outcome"], registry=BOT)

for _job in ("recording", "enrollment"):
    LEASE_TAKEOVERS.labels(_job)
for _outcome in ENROLLMENT_OUTCOMES:
    ENROLLMENTS.labels(_outcome)


def since(histogram: Histogram, start: datetime | None) -> None:
    """Observes the seconds from `start` (an aware datetime) until now."""
    if start is not None:
        histogram.observe(max(0.0, (datetime.now(UTC) - start).total_seconds()))


def engine_job(engine: str, kind: str, seconds: float, job: Job) -> None:
    """One finished engine job of the bot's: its time, and its real-time factor when the media's length is known."""
    ENGINE_JOB_SECONDS.labels(engine, kind).observe(seconds)
    duration = (job.output or {}).get("duration")
    if job.status is JobStatus.succeeded and isinstance(duration, int | float) and duration > 0:
        ENGINE_JOB_RTF.labels(engine, kind).observe(seconds / duration)


def gauge(name: str, documentation: str, labels: Iterable[str] = (),
          samples: Iterable[tuple[tuple[str, ...], float]] = ()) -> GaugeMetricFamily:
    """A gauge computed at scrape time (from the database, or a server's memory)."""
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


class _Scrape:
    """A registry's metrics plus the ones computed for this scrape."""

    def __init__(self, registry: CollectorRegistry, extra: Iterable[Metric]):
        self.registry, self.extra = registry, list(extra)

    def collect(self) -> Iterable[Metric]:
        yield from self.registry.collect()
        yield from self.extra


# -- the listener ------------------------------------------------------------------------------------------
Collect = Callable[[], Awaitable[list[Metric]]]
ReadyAnswer = tuple[bool, dict[str, str]]  # ready or not, with each check's state
Ready = Callable[[], Awaitable[ReadyAnswer]]


def probe_routes(ready: Ready) -> list[web.RouteDef]:
    """`/healthz`: the process answers (liveness, no I/O). `/readyz`: it can do its work (200, else 503), with
    each check's state and no detail that could help an attacker."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        ok, checks = await ready()
        return web.json_response({"ok": ok, **checks}, status=200 if ok else 503)

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]


def metrics_app(registry: CollectorRegistry, *, token: str | None, collect: Collect, ready: Ready) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        if token:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                return web.Response(status=401, text="send 'Authorization: Bearer <METRICS_TOKEN>'\n",
                                    headers={"WWW-Authenticate": "Bearer"})
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(_Scrape(registry, await collect())), headers={"Content-Type": content_type})

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), *probe_routes(ready)])
    return app


async def nothing_more() -> list[Metric]:
    return []


@contextlib.asynccontextmanager
async def metrics_listener(host: str, port: int, *, token: str | None, ready: Ready, registry: CollectorRegistry = BOT,
                           collect: Collect = nothing_more) -> AsyncIterator[None]:
    """Serves `registry` and what `collect` computes at each scrape on `host:port/metrics`, with `/healthz` and
    `/readyz`, while the `with` body runs."""
    runner = web.AppRunner(metrics_app(registry, token=token, collect=collect, ready=ready), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("metrics on http://%s:%s/metrics%s", host, port, " (bearer token)" if token else "")
        yield
    finally:
        await runner.cleanup()
