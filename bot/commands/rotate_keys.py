"""`python -m bot rotate-keys`: re-encrypt voiceprints, tokens and meeting content (results with their transcripts,
relabels, file names, transcript links) with the first key of DATA_ENCRYPTION_KEYS."""
from __future__ import annotations

import argparse
import asyncio
import sys

from bot.config import load_settings
from bot.keys import data_keys
from storage.crypto import SealError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Re-encrypt every voiceprint, token and recording's content (result, transcript, "
                          "relabels, file name) with the first key of DATA_ENCRYPTION_KEYS (plain-text rows from "
                          "older versions included); then the other keys can be removed.")


def main(args: argparse.Namespace) -> int:
    from bot.logs import configure_logging, secret_values

    settings = load_settings()
    configure_logging(settings.log_level, secret_values(settings), settings.log_format)
    keys = data_keys(settings)
    try:
        counts = asyncio.run(_rotate(settings.effective_database_url, keys))
    except SealError as exc:
        print(f"Cannot re-encrypt: {exc}. Add the old key after the new one in DATA_ENCRYPTION_KEYS.",
              file=sys.stderr)
        return 1
    print(f"Re-encrypted {counts['voiceprint']} voiceprint(s), {counts['workspace']} workspace token row(s) and "
          f"{counts['recording']} recording(s) with the current key.")
    return 0


async def _rotate(url: str, keys: list[str]) -> dict[str, int]:
    from storage.database import Database
    from storage.migrate import reencrypt_all, upgrade

    await upgrade(url)
    db = Database(url, keys=keys)
    try:
        return await reencrypt_all(db)
    finally:
        await db.dispose()
