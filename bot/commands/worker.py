"""`python -m bot worker`: the job runner without the web server (several workers can share PostgreSQL)."""
from __future__ import annotations

import argparse
import asyncio
import sys

from bot.config import load_settings


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
    from bot.runtime import prepare_process, work

    prepare_process(settings)
    asyncio.run(work(settings, args.capacity))
    return 0
