"""`python -m bot serve`: the Slack app over HTTP (or Socket Mode) with the job runner in one process, or with
`--no-jobs` the Slack app alone, for a layout where `python -m bot worker` processes run every job."""
from __future__ import annotations

import argparse
import asyncio
import sys

from bot.config import SLACK_SETUP_HELP, load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (default: $HOST or 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default: $PORT or 3000)")
    parser.add_argument("--no-jobs", action="store_true",
                        help="take Slack requests and queue their jobs, but run none: workers (python -m bot worker) "
                             "sharing the database run them")


def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    missing = settings.missing_slack_settings() + settings.missing_engine_settings()
    if missing:
        print(SLACK_SETUP_HELP.format(missing=", ".join(missing)), file=sys.stderr)
        return 2
    from bot.runtime import prepare_process, serve

    prepare_process(settings)
    asyncio.run(serve(settings, args.host or settings.host, args.port or settings.port, run_jobs=not args.no_jobs))
    return 0
