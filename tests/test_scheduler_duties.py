"""The scheduler's housekeeping, run by the scheduler itself rather than by calling the storage functions:
expired results are purged when it starts, and rotating OAuth tokens are refreshed before they expire — a
workspace whose refresh token Slack refuses must not stop the others. On both databases, fake Slack on 127.0.0.1.
"""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from slack_sdk.errors import SlackApiError
from sqlalchemy import update

from bot.engines.local import LocalEngine
from bot.jobs.scheduler import JobRunner
from bot.pools import CpuPool, TaskSet
from bot.runtime import recognizer
from bot.schema import utcnow
from bot.services.context import Services
from bot.slack_api.client import make_client
from storage.database import Database
from storage.models import Recording
from testbed.fake_slack import TEAM_ID, FakeSlack, bot_settings

RESULT = {"diarization": [{"speaker": "SPEAKER_00", "start": 0.0, "end": 2.5}],
          "identification": [{"speaker": "U1", "start": 0.0, "end": 2.5, "diarizationSpeaker": "SPEAKER_00",
                              "match": "U1"}],
          "voiceprints": [{"speaker": "SPEAKER_00", "match": "U1", "confidence": {"U1": 91.0}}]}
REFUSED_TEAM, REFUSED_REFRESH, REFUSED_ACCESS = "T0REFUSED", "xoxe-1-no-longer-valid", "xoxb-refused-team-token"


@pytest.fixture
async def fake():
    slack = FakeSlack()
    await slack.start()
    yield slack
    await slack.close()


@pytest.fixture
async def engine():
    local = LocalEngine(workers=1)  # never asked to do anything: housekeeping needs no model
    yield local
    await local.close()


async def running(services: Services) -> JobRunner:
    runner = JobRunner(services, cpu=CpuPool(), speech=recognizer(services.settings), background=TaskSet())
    await runner.start()
    return runner


async def finished_recording(db: Database, file_id: str, *, days_ago: float) -> int:
    """A posted recording with a result, finished `days_ago` days ago."""
    from storage.recordings import claim_next, complete, enqueue_recording, mark_posted

    rec, _ = await enqueue_recording(db, team_id=TEAM_ID, channel_id="C1", file_id=file_id, file_name="a.wav",
                                     uploader_id="U1", message_ts="1.2",
                                     engine="local")
    assert (await claim_next(db, "test", 60)).id == rec.id
    assert await complete(db, rec.id, "test", RESULT, 2.5)
    assert await mark_posted(db, rec.id, "test", "1.3")
    async with db.session() as s:
        await s.exec(update(Recording).where(Recording.id == rec.id)
                     .values(finished_at=utcnow() - timedelta(days=days_ago)))
        await s.commit()
    return rec.id


async def test_the_scheduler_purges_expired_results(db: Database, db_url: str, fake: FakeSlack, engine):
    from storage.recordings import get_recording

    expired = await finished_recording(db, "FOLD", days_ago=31)
    recent = await finished_recording(db, "FNEW", days_ago=29)
    runner = await running(Services(settings=bot_settings(fake, db_url, result_retention_days=30), db=db,
                                    engine=engine))
    try:
        async def purged():
            rec = await get_recording(db, expired)
            return rec.result is None and rec.relabels is None

        await fake.wait_for(purged, timeout=30, what="the scheduler's purge")
    finally:
        await runner.stop()
    assert (await get_recording(db, recent)).result == RESULT


async def test_the_scheduler_rotates_tokens_and_a_refused_refresh_token_stops_no_other(
        db: Database, db_url: str, fake: FakeSlack, engine, monkeypatch, caplog):
    from bot.jobs import scheduler
    from storage.workspaces import get_workspace, save_workspace

    monkeypatch.setattr(scheduler, "REFRESH_EVERY_SECONDS", 3600)  # only the pass at start can rotate in time
    caplog.set_level(logging.INFO)
    settings = bot_settings(fake, db_url, slack_bot_token=None, slack_client_id="111.222",
                            slack_client_secret="client-secret")
    soon = utcnow() + timedelta(minutes=30)
    fake.tokens.add(REFUSED_ACCESS)  # Slack no longer knows its refresh token (e.g. the app was reinstalled)
    await save_workspace(db, team_id=REFUSED_TEAM, enterprise_id=None, is_enterprise_install=False,
                         bot_token=REFUSED_ACCESS, bot_refresh_token=REFUSED_REFRESH, bot_token_expires_at=soon)
    old, refresh = fake.issue_tokens()
    await save_workspace(db, team_id=TEAM_ID, enterprise_id=None, is_enterprise_install=False, bot_token=old,
                         bot_refresh_token=refresh, bot_token_expires_at=soon)
    services = Services(settings=settings, db=db, engine=engine)
    runner = await running(services)
    try:
        async def rotated():
            ws = await get_workspace(db, TEAM_ID)
            return ws if ws.bot_token != old else None

        ws = await fake.wait_for(rotated, timeout=30, what="the scheduler's token rotation")
    finally:
        await runner.stop()

    assert ws.bot_token_expires_at > utcnow() + timedelta(hours=11)
    assert await services.bot_token(TEAM_ID) == ws.bot_token
    assert (await make_client(settings, ws.bot_token).auth_test())["ok"]
    with pytest.raises(SlackApiError, match="invalid_auth"):  # Slack stopped accepting the rotated-out token
        await make_client(settings, old).auth_test()

    refused = await get_workspace(db, REFUSED_TEAM)
    assert refused.bot_token == REFUSED_ACCESS and refused.bot_refresh_token == REFUSED_REFRESH
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and REFUSED_TEAM in r.getMessage()]
    assert warnings, "the refused rotation must be logged with its workspace"
    assert not any(secret in caplog.text for secret in (REFUSED_REFRESH, REFUSED_ACCESS, refresh, old, ws.bot_token))
