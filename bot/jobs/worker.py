"""`python -m bot worker`: the job loop without the web server (several workers can share PostgreSQL)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from bot.config import load_settings

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--capacity", type=int, help="recordings processed at once (default: $ENGINE_WORKERS)")


def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    missing = settings.missing_engine_settings()
    if not (settings.slack_bot_token or (settings.slack_client_id and settings.slack_client_secret)):
        missing = ["SLACK_BOT_TOKEN (or SLACK_CLIENT_ID + SLACK_CLIENT_SECRET)", *missing]
    if missing:
        print(f"The worker cannot start: missing {', '.join(missing)}. See the settings table in README.md.",
              file=sys.stderr)
        return 2
    from bot.slack.server import prepare_process

    prepare_process(settings)
    asyncio.run(work(settings, args.capacity))
    return 0


async def until_stopped() -> None:
    """Wait for SIGTERM (a platform stopping the dyno) or SIGINT, so shutdown is orderly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def work(settings, capacity: int | None) -> None:
    from bot.jobs.scheduler import JobRunner
    from bot.slack.server import close_services, open_services

    services = await open_services(settings)
    runner = JobRunner(services, capacity=capacity)
    await runner.start()
    log.info("worker %s started", runner.owner)
    try:
        await until_stopped()
    finally:
        await runner.stop()
        await close_services(services)
