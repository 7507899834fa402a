"""The bot token goes only to Slack's file hosts. A file whose `url_private_download` (from `files.info`) points
anywhere else — here a server of the attacker's on another port of 127.0.0.1 — is refused before any request
is made: the person reads why, the log names the host, and the other server never sees the token. End to end:
signed requests to the real endpoint, the fake Slack Web API (SLACK_API_URL), a fake engine."""
from __future__ import annotations

import logging

import pytest
import pytest_asyncio
from aiohttp import web

from bot.schema import utcnow
from storage.database import Database
from storage.migrate import upgrade
from storage.voiceprints import upsert_voiceprint
from testbed.fake_slack import TEAM_ID, BotUnderTest, FakeSlack, bot_settings
from tests.fake_engine import FakeEngine
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import enroll, wait_status

CHANNEL = "C0001"
REFUSED = "is not stored on Slack's own file servers, so Voice ID will not fetch it."


def test_token_goes_to_slack_file_hosts_and_the_api_host_only():
    from bot.slack_api.files import token_may_go_to

    slack, gov, test = "https://slack.com/api/", "https://slack-gov.com/api/", "http://127.0.0.1:8123/api/"
    allowed = [("https://files.slack.com/files-pri/T1-F1/download/a.m4a", slack),
               ("https://files.slack.com:443/files-pri/T1-F1/a.m4a", test),
               ("https://files.slack-gov.com/files-pri/T1-F1/a.m4a", gov),
               ("http://127.0.0.1:8123/files/F1/a.m4a", test)]
    refused = [("https://evil.example/x.m4a", slack), ("http://files.slack.com/files-pri/a.m4a", slack),
               ("https://files.slack.com.evil.example/a.m4a", slack), ("https://evil.example@files.slack.com/a", slack),
               ("https://files.slack.com:8443/a.m4a", slack), ("https://slack.com.evil.example/a", slack),
               ("http://127.0.0.1:8124/files/F1/a.m4a", test), ("https://127.0.0.1:8123/files/F1/a.m4a", test),
               ("https://files.slack.com:99999/a.m4a", slack), ("file:///etc/passwd", slack), ("", slack)]
    assert [url for url, api in allowed if not token_may_go_to(url, api)] == []
    assert [url for url, api in refused if token_may_go_to(url, api)] == []


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    """The bot on the fake Slack, and another server on 127.0.0.1 that records what reaches it."""
    seen: list[dict] = []

    async def steal(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(body=b"RIFF stolen", content_type="audio/wav")

    evil = web.Application()
    evil.add_routes([web.get("/{tail:.*}", steal)])
    runner = web.AppRunner(evil, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    evil_base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = ["U1", "U2", "UBOT"]
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('file-hosts') / 'voiceid.db'}"
    await upgrade(url)
    db = Database(url)
    engine = FakeEngine({"diarization": [{"speaker": "SPEAKER_00", "start": 0, "end": 5}],
                         "voiceprints": [{"speaker": "SPEAKER_00", "match": "U1", "confidence": {"U1": 90.0}}]})
    await upsert_voiceprint(db, team_id=TEAM_ID, user_id="U1", engine=engine.engine_id, model_id="m",
                            voiceprint="AAAA", consent_at=utcnow(), clip_duration=10.0)
    bot = await BotUnderTest(fake, bot_settings(fake, url, job_max_attempts=1), db, engine, cpu=shared_cpu()).start()
    yield fake, db, bot, evil_base, seen
    await bot.stop()
    await db.dispose()
    await fake.close()
    await runner.cleanup()


e2e = pytest.mark.asyncio(loop_scope="module")


@e2e
async def test_a_recording_hosted_elsewhere_is_refused_without_sending_the_token(world, caplog):
    fake, db, bot, evil_base, seen = world
    caplog.set_level(logging.INFO)
    f = fake.add_file("standup.m4a", "audio/mp4", b"", url=f"{evil_base}/files-pri/T0001-F1/standup.m4a")
    event = bot.share_event(f)
    assert (await bot.event(event, event_id="EvElsewhere")).status == 200
    rec = await wait_status(fake, db, f.id, {"failed", "posted"}, timeout=60)
    assert rec.error_code == "not_in_slack", rec.error_message
    reply = [m for m in fake.thread(CHANNEL, event["ts"]) if m.text.startswith("Could not identify")]
    assert reply and f"standup.m4a {REFUSED}" in reply[0].text, reply
    assert "127.0.0.1" not in reply[0].text and "Upload the recording into Slack itself" in str(reply[0].blocks)
    assert seen == [], "the other server was asked for the file"
    logged = [r.getMessage() for r in caplog.records if "not a Slack file host" in r.getMessage()]
    assert logged and evil_base in logged[0] and fake.token not in logged[0], logged


@e2e
async def test_an_enrollment_clip_hosted_elsewhere_is_refused_without_sending_the_token(world):
    fake, _, bot, evil_base, seen = world
    answer = await enroll(bot, fake, "U2", b"RIFF my voice", url=f"{evil_base}/clip.wav")
    assert answer == f":warning: Your voice was not enrolled: me.wav {REFUSED}", answer
    assert seen == [], "the other server was asked for the clip"


@e2e
async def test_a_file_on_slacks_own_host_still_downloads(world):
    fake, db, bot, _, seen = world
    f = fake.add_file("weekly.wav", "audio/wav", b"RIFF meeting audio")
    assert (await bot.event(bot.share_event(f), event_id="EvOwnHost")).status == 200
    rec = await wait_status(fake, db, f.id, {"failed", "posted"}, timeout=60)
    assert rec.state.value == "posted", rec.error_message
    assert seen == []
