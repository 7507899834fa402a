"""The composition root: which parts a process has, and the one place each is started and stopped.

`serve` (Slack over HTTP or Socket Mode, with the job runner) and `worker` (the job runner alone) are each one
aiohttp application whose cleanup contexts open and close one resource apiece, as aiohttp's own examples do:
database → engine → services (settings, database and engine, read by everyone) → speech recognizer (its process
starts with the first transcript) → CPU pool → background tasks (the work listeners and jobs start after an ack
or a step, awaited at shutdown) → metrics listener (with `METRICS_PORT`) → job runner → Slack (bolt, Socket
Mode). They are unwound in the opposite order, so the runner releases its jobs before the engine and database
close. Each part is handed only to those who use it: the runner gets the CPU pool, the recognizer and the
background tasks; the Slack listeners get the CPU pool, the background tasks and this process's runner (none
with `--no-jobs`). `serve` answers `/healthz` and `/readyz` on its listener; every process answers them on its
metrics listener too.
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
from bot.pools import CpuPool, TaskSet
from bot.services.context import Recognizer, Services
from storage.database import Database

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
ENGINE = web.AppKey("engine", Engine)
SERVICES = web.AppKey("services", Services)
SPEECH = web.AppKey("speech", Recognizer)
CPU = web.AppKey("cpu", CpuPool)
BACKGROUND = web.AppKey("background", TaskSet)
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
    """What everyone reads (settings, database, engine); nothing to stop."""
    if SERVICES not in app:
        app[SERVICES] = Services(settings=app[SETTINGS], db=app[DATABASE], engine=app[ENGINE])
    yield


def recognizer(settings: Settings) -> Recognizer:
    """The speech recognizer in its own worker process, made and loaded with the first recording."""
    from bot.transcription.recognizer import LazyTranscriptionWorker

    return LazyTranscriptionWorker(settings.transcript_model.value, settings.var_dir, settings.transcript_language,
                                   max_duration_s=settings.max_recording_hours * 3600)


async def speech(app: web.Application) -> AsyncIterator[None]:
    if SPEECH not in app:
        app[SPEECH] = recognizer(app[SETTINGS])
    yield
    await app[SPEECH].close()


async def cpu(app: web.Application) -> AsyncIterator[None]:
    if CPU in app:  # given: its owner closes it
        yield
        return
    app[CPU] = CpuPool()
    yield
    await app[CPU].close()


async def background(app: web.Application) -> AsyncIterator[None]:
    """Work started after an ack (listeners) or a step (the runner's chart redraws), awaited before the pools
    and the database close."""
    app[BACKGROUND] = TaskSet()
    yield
    await app[BACKGROUND].wait()


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
    """The job runner; the Slack listeners get it to hand what they queue to it (new work, an enrollment to run
    here at once, a person's enrollments to cancel)."""
    runner = JobRunner(app[SERVICES], cpu=app[CPU], speech=app[SPEECH], background=app[BACKGROUND],
                       capacity=app.get(CAPACITY))
    await runner.start()
    app[RUNNER] = runner
    yield
    await runner.stop()


def build_slack(app: web.Application):
    """Bolt's listeners over what they use (`bot.slack.app.build_bolt`)."""
    from bot.slack.app import build_bolt

    return build_bolt(app[SERVICES], cpu=app[CPU], background=app[BACKGROUND], runner=app.get(RUNNER))


# -- the processes ---------------------------------------------------------------------------------------

def application(settings: Settings, *, slack: bool = True, run_jobs: bool = True, capacity: int | None = None,
                given: Services | None = None, speech_given: Recognizer | None = None,
                cpu_given: CpuPool | None = None) -> web.Application:
    """The process as an aiohttp application. `given` services (tests) replace the database and engine
    contexts: whoever made them closes them. `speech_given` (tests: a recognizer double) replaces the speech
    recognizer; it is closed with the application. `cpu_given` (tests: one pool shared by many applications)
    replaces the CPU pool; whoever made it closes it."""
    app = web.Application(client_max_size=1024**2)
    app[SETTINGS] = settings
    if capacity:
        app[CAPACITY] = capacity
    if given is None:
        app.cleanup_ctx.extend([database, engine])
    else:
        app[SERVICES] = given
    if speech_given is not None:
        app[SPEECH] = speech_given
    if cpu_given is not None:
        app[CPU] = cpu_given
    app.cleanup_ctx.extend([services, speech, cpu, background])
    if settings.metrics_port:
        app.cleanup_ctx.append(metrics(cluster_gauges=slack))
    if run_jobs:
        app.cleanup_ctx.append(jobs)
    if slack:
        from bot.metrics import probe_routes
        from bot.services.monitoring import Reused, readiness
        from bot.slack.app import add_slack

        add_slack(app, settings, build_slack)
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
