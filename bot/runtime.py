"""The composition root: which parts a process has, and the one place each is started and stopped.

`serve` (Slack over HTTP or Socket Mode, with the job runner) and `worker` (the job runner alone) are each one
aiohttp application whose cleanup contexts open and close one resource apiece, as aiohttp's own examples do:
database → engine → services (CPU pool, recognizer, background tasks) → metrics listener (with `METRICS_PORT`)
→ job runner → Slack (bolt, Socket Mode). They are unwound in the opposite order, so the runner releases its
jobs before the engine and database close. `serve` answers `/healthz` and `/readyz` on its listener; every
process answers them on its metrics listener too.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bot.config import Settings
from bot.engines.base import Engine
from bot.jobs.scheduler import JobRunner
from bot.services.context import SERVICES, Services
from storage.database import Database

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
ENGINE = web.AppKey("engine", Engine)
RUNNER = web.AppKey("runner", JobRunner)
CAPACITY = web.AppKey("capacity", int)


def prepare_process(settings: Settings) -> None:
    """Before the event loop (serve and worker): redacting logs, the data keys (exit 2 when missing), and
    the temporary audio that crashed processes left swept away."""
    from bot.keys import data_keys
    from bot.logs import configure_logging, secret_values
    from bot.scratch import sweep_scratch

    configure_logging(settings.log_level, secret_values(settings), settings.log_format)
    data_keys(settings)
    sweep_scratch(settings.var_dir)


async def until_stopped() -> None:
    """Wait for SIGTERM (a platform stopping the process) or SIGINT, so shutdown is orderly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# -- one cleanup context per resource ------------------------------------------------------------------

async def database(app: web.Application) -> AsyncIterator[None]:
    """Migrated, then opened with the data keys."""
    from bot.keys import data_keys
    from storage.migrate import upgrade

    settings = app[SETTINGS]
    await upgrade(settings.effective_database_url)
    app[DATABASE] = Database(settings.effective_database_url, keys=data_keys(settings))
    yield
    await app[DATABASE].dispose()


async def engine(app: web.Application) -> AsyncIterator[None]:
    from bot.engines.factory import make_engine

    app[ENGINE] = make_engine(app[SETTINGS])
    yield
    await app[ENGINE].close()


async def services(app: web.Application) -> AsyncIterator[None]:
    """What listeners and jobs share; at the end, background work is awaited and the process pools stopped."""
    if SERVICES not in app:
        app[SERVICES] = Services(settings=app[SETTINGS], db=app[DATABASE], engine=app[ENGINE])
    yield
    await close_services(app[SERVICES])


def metrics(cluster_gauges: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    """This process's `/metrics`, `/healthz` and `/readyz` on METRICS_HOST:METRICS_PORT; the database's
    cluster-wide gauges only where `cluster_gauges` (serve), so a scrape of every worker does not repeat them."""
    from bot.metrics import metrics_listener, nothing_more
    from bot.services.monitoring import Reused, database_gauges, readiness

    async def context(app: web.Application) -> AsyncIterator[None]:
        s, services = app[SETTINGS], app[SERVICES]
        collect = (lambda: database_gauges(services)) if cluster_gauges else nothing_more
        token = s.metrics_token.get_secret_value() if s.metrics_token else None
        async with metrics_listener(s.metrics_host, s.metrics_port, token=token, collect=collect,
                                    ready=Reused(lambda: readiness(services))):
            yield

    return context


async def jobs(app: web.Application) -> AsyncIterator[None]:
    """The job runner; while it runs, the services hand it what this process's listeners queue (new work, an
    enrollment to run here at once, a person's enrollments to cancel)."""
    services = app[SERVICES]
    runner = JobRunner(services, capacity=app.get(CAPACITY))
    await runner.start()
    app[RUNNER] = services.runner = runner
    yield
    services.runner = None
    await runner.stop()


async def close_services(s: Services) -> None:
    await s.drain()
    await s.close_pool()
    await s.close_speech()


# -- the processes ---------------------------------------------------------------------------------------

def application(settings: Settings, *, slack: bool = True, run_jobs: bool = True, capacity: int | None = None,
                given: Services | None = None) -> web.Application:
    """The process as an aiohttp application. `given` services (tests) replace the database and engine
    contexts: whoever made them closes them."""
    app = web.Application(client_max_size=1024**2)
    app[SETTINGS] = settings
    if capacity:
        app[CAPACITY] = capacity
    if given is None:
        app.cleanup_ctx.extend([database, engine])
    else:
        app[SERVICES] = given
    app.cleanup_ctx.append(services)
    if settings.metrics_port:
        app.cleanup_ctx.append(metrics(cluster_gauges=slack))
    if run_jobs:
        app.cleanup_ctx.append(jobs)
    if slack:
        from bot.metrics import probe_routes
        from bot.services.monitoring import Reused, readiness
        from bot.slack.app import add_slack

        add_slack(app, settings)
        app.add_routes(probe_routes(Reused(lambda: readiness(app[SERVICES]))))
    if run_jobs and settings.engine_webhook_secret is not None:
        from bot.engines.factory import WEBHOOK_PATH
        from bot.engines.webhooks import webhook_routes

        async def on_job(job) -> None:
            app[RUNNER].recording_job.job_changed(job)

        app.add_routes(webhook_routes(settings.engine_webhook_secret.get_secret_value(), on_job, path=WEBHOOK_PATH))
    return app


async def serve(settings: Settings, host: str, port: int, *, run_jobs: bool = True,
                stopped: Callable[[], Awaitable[object]] | None = None) -> None:
    """`python -m bot serve` until `stopped()` completes (default: SIGTERM or SIGINT); without `run_jobs`
    (`--no-jobs`) it queues what Slack asks for and leaves every job to the workers."""
    if not run_jobs and settings.engine_webhook_secret is not None:
        log.warning("ENGINE_WEBHOOK_SECRET is set, but this serve runs no jobs: it does not answer engine webhooks "
                    "(the workers poll their engine jobs every JOB_POLL_SECONDS)")
    runner = web.AppRunner(application(settings, run_jobs=run_jobs), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        where = "/healthz (Socket Mode)" if settings.socket_mode else "/slack/events"
        log.info("Voice ID listening on http://%s:%s%s%s", host, port, where,
                 "" if run_jobs else "; jobs are left to the workers (--no-jobs)")
        await (stopped or until_stopped)()
    finally:
        await runner.cleanup()


async def work(settings: Settings, capacity: int | None = None,
               stopped: Callable[[], Awaitable[object]] | None = None) -> None:
    """`python -m bot worker`: the job runner without a web server (several workers can share PostgreSQL)."""
    app = application(settings, slack=False, capacity=capacity)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        log.info("worker %s started", app[RUNNER].owner)
        await (stopped or until_stopped)()
    finally:
        await runner.cleanup()
