"""`python -m bot serve`: the Slack app over HTTP (or Socket Mode) with the job runner in one process."""
from __future__ import annotations

import argparse
import asyncio
import sys

from bot.config import SLACK_SETUP_HELP, load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (default: $HOST or 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default: $PORT or 3000)")


def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    missing = settings.missing_slack_settings() + settings.missing_engine_settings()
    if missing:
        print(SLACK_SETUP_HELP.format(missing=", ".join(missing)), file=sys.stderr)
        return 2
    from bot.runtime import prepare_process, serve

    prepare_process(settings)
    asyncio.run(serve(settings, args.host or settings.host, args.port or settings.port))
    return 0
