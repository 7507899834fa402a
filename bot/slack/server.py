"""`python -m bot serve`: the Slack app over HTTP (or Socket Mode) with the job scheduler in one process."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

from bot.config import SLACK_SETUP_HELP, Settings, load_settings

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (default: $HOST or 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default: $PORT or 3000)")


def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    missing = settings.missing_slack_settings() + settings.missing_engine_settings()
    if missing:
        print(SLACK_SETUP_HELP.format(missing=", ".join(missing)), file=sys.stderr)
        return 2
    prepare_process(settings)
    asyncio.run(serve(settings, args.host or settings.host, args.port or settings.port))
    return 0


def prepare_process(settings: Settings) -> None:
    """Before the event loop (serve and worker): redacting logs, the data keys (exit 2 when missing), and
    the temporary audio that crashed processes left swept away."""
    from bot.keys import data_keys
    from bot.logs import configure_logging, secret_values
    from bot.scratch import sweep_scratch

    configure_logging(settings.log_level, secret_values(settings))
    data_keys(settings)
    sweep_scratch(settings.var_dir)


async def open_services(settings: Settings):
    """Migrate, then open the database and the engine (the caller closes both with `close_services`)."""
    from bot.engines.factory import make_engine
    from bot.keys import data_keys
    from bot.services.context import Services
    from storage.database import Database
    from storage.migrate import upgrade

    await upgrade(settings.effective_database_url)
    db = Database(settings.effective_database_url, keys=data_keys(settings))
    return Services(settings=settings, db=db, engine=make_engine(settings))


async def close_services(services) -> None:
    await services.drain()
    await services.close_pool()
    await services.close_speech()
    await services.engine.close()
    await services.db.dispose()


async def serve(settings: Settings, host: str, port: int, *,
                stopped: Callable[[], Awaitable[object]] | None = None) -> None:
    """Serve until `stopped()` completes (default: SIGTERM or SIGINT)."""
    from aiohttp import web

    from bot.jobs.worker import until_stopped
    from bot.slack.app import build_bolt, build_web_app

    wait = stopped or until_stopped
    services = await open_services(settings)
    runner = None
    try:
        bolt = build_bolt(services)
        runner = web.AppRunner(build_web_app(services, bolt), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        if services.socket_mode:
            from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

            log.info("Voice ID: Socket Mode, health on http://%s:%s/healthz", host, port)
            handler = AsyncSocketModeHandler(bolt, settings.slack_app_token.get_secret_value())
            await handler.connect_async()
            try:
                await wait()
            finally:
                await handler.close_async()
        else:
            log.info("Voice ID listening on http://%s:%s/slack/events", host, port)
            await wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        await close_services(services)
