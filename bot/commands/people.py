"""`python -m bot people export|delete --team T --user U`: a person's data-protection request, answered by whoever
runs Voice ID — also for someone who has left. `export` prints what is stored about them as JSON (never the
voiceprint); `delete` takes the same path as `/enroll delete` (`bot.services.people.erase_person`), edits the
summaries already posted in Slack, tells the person by DM, and prints what it did as JSON."""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys

from bot.config import Settings, load_settings

TEAM = re.compile(r"[TE][A-Z0-9]{2,31}")
USER = re.compile(r"[UW][A-Z0-9]{2,31}")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Answer a person's data-protection request: `export` prints what Voice ID stores about "
                          "them as JSON (never the voiceprint itself); `delete` deletes their voiceprints and takes "
                          "their name out of every stored result and posted summary, with an audit row, and tells "
                          "them by direct message.")
    parser.add_argument("action", choices=("export", "delete"))
    parser.add_argument("--team", required=True, help="the workspace's Slack id (T…)")
    parser.add_argument("--user", required=True, help="the person's Slack user id (U… or W…)")
    parser.add_argument("--no-slack", action="store_true",
                        help="delete: change only the database (no summary edits, no direct message)")


def main(args: argparse.Namespace) -> int:
    from bot.keys import data_keys
    from bot.logs import configure_logging, secret_values

    for flag, value, pattern, example in (("--team", args.team, TEAM, "T0123ABCD"),
                                          ("--user", args.user, USER, "U0123ABCD")):
        if not pattern.fullmatch(value):
            print(f"{flag} must be a Slack id such as {example} (capital letters and digits)", file=sys.stderr)
            return 2
    settings = load_settings()
    configure_logging(settings.log_level, secret_values(settings))
    keys = data_keys(settings)
    if args.action == "export":
        report = asyncio.run(_export(settings, keys, args.team, args.user))
    else:
        report = asyncio.run(_delete(settings, keys, args.team, args.user, slack=not args.no_slack))
    print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    return 0


async def _export(settings: Settings, keys: list[str], team_id: str, user_id: str) -> dict:
    from bot.services.people import export_person
    from storage.database import Database
    from storage.migrate import upgrade

    await upgrade(settings.effective_database_url)
    db = Database(settings.effective_database_url, keys=keys)
    try:
        return await export_person(db, team_id, user_id, result_days=settings.result_retention_days,
                                   audit_days=settings.audit_retention_days)
    finally:
        await db.dispose()


async def _delete(settings: Settings, keys: list[str], team_id: str, user_id: str, *, slack: bool) -> dict:
    from bot.engines.factory import make_engine
    from bot.pools import CpuPool
    from bot.services.context import NotInstalled, Services
    from bot.services.people import ENGINE_COPIES, erase_person, notify_erased
    from bot.slack_api.web_api import slack_for
    from storage.database import Database
    from storage.migrate import upgrade

    await upgrade(settings.effective_database_url)
    services = Services(settings=settings, db=Database(settings.effective_database_url, keys=keys),
                        engine=make_engine(settings))
    cpu = CpuPool()  # charts redrawn without the person
    try:
        port, no_slack = None, "--no-slack" if not slack else None
        if slack:
            try:
                port = await slack_for(services, team_id)
            except NotInstalled as exc:
                no_slack = str(exc)
        erasure = await erase_person(services, port, team_id, user_id, actor_id=None, via="command line",
                                     cpu=cpu, runner=None)
        notified = None
        if port is not None and erasure.anything:
            error = await notify_erased(port, user_id, None, erasure)
            notified = {"sent": error is None, **({"slack_error": error} if error else {})}
        return {
            "workspace": team_id, "person": user_id,
            "deleted": {k: v for k, v in erasure.detail("command line").items() if k not in ("via", "recordings")},
            "recordings_redacted": [rec.id for rec in erasure.results],
            "slack": {
                "not_contacted_because": no_slack,
                "summaries_updated": erasure.shown,
                "summaries_not_updated": [{"recording_id": rec.id, "channel_id": rec.channel_id, "ts": rec.posted_ts,
                                           "why": why} for rec, why in erasure.not_shown],
                "transcript_files_that_may_name_them": [{"recording_id": t.recording_id, "link": t.url}
                                                        for t in erasure.transcripts],
                "person_notified": notified},
            "engine_copies": ENGINE_COPIES[settings.engine],
            "audit": "an `erase` audit row records this deletion",
        }
    finally:
        await cpu.close()
        await services.engine.close()
        await services.db.dispose()
