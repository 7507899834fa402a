"""`python -m bot migrate`: apply the database migrations (SQLite under VAR_DIR by default)."""
from __future__ import annotations

import argparse
import asyncio
import sys

from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError

from storage.database import DatabaseURLError, safe_url
from storage.migrate import upgrade


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=None,
                        help="database to migrate (default: DATABASE_URL, else a SQLite file under VAR_DIR)")


def main(args: argparse.Namespace) -> int:
    url = args.database_url
    if not url:
        from bot.config import load_settings

        url = load_settings().effective_database_url
    try:
        report = asyncio.run(upgrade(url))
    except DatabaseURLError as exc:
        print(f"Cannot migrate: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"Cannot migrate {safe_url(url)}: {exc}. Is this database from a newer version of Voice ID?",
              file=sys.stderr)
        return 1
    except (OSError, DBAPIError) as exc:
        print(f"Cannot reach the database {safe_url(url)}: {exc}", file=sys.stderr)
        return 1
    print(report.describe())
    return 0
