"""`python -m bot serve`: the Slack app over HTTP (or Socket Mode) with the job scheduler in one process."""
from __future__ import annotations

import argparse
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
    print("The Slack app is not built yet.", file=sys.stderr)
    return 1
