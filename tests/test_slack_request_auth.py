"""Who may change state: every Slack request over HTTP is signed, and in Socket Mode the HTTP listener has no
Slack routes at all (Slack's requests come over the WebSocket, which the fake Slack serves here).

Socket Mode runs the real `python -m bot serve` code path (`serve`) on a real port, against the fake Slack
Web API and a migrated SQLite file; HTTP mode is the real aiohttp endpoint of the other Slack tests."""
from __future__ import annotations

import asyncio
import json
import socket
import time
from urllib.parse import urlencode

import aiohttp
import pytest
import pytest_asyncio

from bot.schema import utcnow
from storage.database import Database
from storage.migrate import upgrade
from testbed.fake_slack import APP_TOKEN, TEAM_ID, BotUnderTest, FakeSlack, bot_settings, signed_headers
from tests.shared_cpu import shared_cpu

VICTIM = "UVICTIM"
ATTACKER = "UATTACK"
FORM = "application/x-www-form-urlencoded"

pytestmark = pytest.mark.asyncio(loop_scope="module")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command_fields(user: str, text: str) -> dict:
    return {"token": "x", "team_id": TEAM_ID, "team_domain": "fake", "channel_id": "C0001",
            "channel_name": "general", "user_id": user, "user_name": user.lower(), "command": "/enroll",
            "text": text, "api_app_id": "A0001", "response_url": "http://127.0.0.1:9/respond",
            "trigger_id": f"trig-{user}"}


async def enroll_directly(db: Database, user: str, engine: str = "local") -> None:
    from storage.voiceprints import upsert_voiceprint

    await upsert_voiceprint(db, team_id=TEAM_ID, user_id=user, engine=engine, model_id="m", voiceprint="AAAA",
                            consent_at=utcnow(), clip_duration=10.0)


async def enrolled(db: Database, user: str) -> bool:
    from storage.voiceprints import get_voiceprint

    return await get_voiceprint(db, TEAM_ID, user) is not None


def forged_requests(fake: FakeSlack) -> dict[str, tuple[str, str]]:
    """Unsigned bodies that would change state if accepted: (body, content type) by what they try."""
    now = int(time.time())

    def event(ev: dict) -> str:
        return json.dumps({"token": "x", "team_id": TEAM_ID, "api_app_id": "A0001", "type": "event_callback",
                           "event_id": f"EvForged{ev['type']}", "event_time": now, "event": ev,
                           "authorizations": [{"team_id": TEAM_ID, "user_id": "UBOT", "is_bot": True}]})

    f = fake.add_file("forged.wav", "audio/wav", b"RIFF")
    share = {"type": "message", "subtype": "file_share", "channel": "C0001", "user": ATTACKER, "text": "",
             "ts": f"{now}.000100", "files": [fake.file_object(f)]}
    submit = {"type": "view_submission", "team": {"id": TEAM_ID}, "user": {"id": VICTIM, "team_id": TEAM_ID},
              "api_app_id": "A0001", "view": {"id": "V1", "callback_id": "enroll_modal", "state": {"values": {}}}}
    return {
        "enroll delete": (urlencode(command_fields(VICTIM, "delete")), FORM),
        "app_uninstalled": (event({"type": "app_uninstalled"}), "application/json"),
        "file_share": (event(share), "application/json"),
        "view_submission": (urlencode({"payload": json.dumps(submit)}), FORM),
    }


# -- Socket Mode ------------------------------------------------------------------------------------

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def socket_bot(tmp_path_factory):
    """`serve` in Socket Mode (app token, no signing secret), connected to the fake Slack's WebSocket."""
    from bot.runtime import serve

    fake = FakeSlack()
    await fake.start()
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('socket-mode') / 'voiceid.db'}"
    settings = bot_settings(fake, url, slack_app_token=APP_TOKEN, slack_signing_secret=None)
    port = free_port()
    stop = asyncio.Event()
    server = asyncio.get_running_loop().create_task(serve(settings, "127.0.0.1", port, stopped=stop.wait))
    await fake.wait_for(lambda: fake.sockets or server.done(), timeout=60, what="the bot's Socket Mode connection")
    if server.done():
        server.result()  # serve ended early: show why
    db = Database(url)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            yield fake, db, http
    finally:
        stop.set()
        await asyncio.wait_for(server, 60)
        await db.dispose()
        await fake.close()


async def test_socket_mode_answers_commands_over_the_socket(socket_bot):
    fake, db, _ = socket_bot
    await enroll_directly(db, VICTIM)
    ack = await fake.socket_envelope("slash_commands", command_fields(VICTIM, "status"))
    assert "You are enrolled since" in ack["payload"]["text"]
    assert [c.token for c in fake.calls_to("apps.connections.open")] == [APP_TOKEN]


async def test_socket_mode_http_listener_serves_no_slack_routes(socket_bot):
    fake, db, http = socket_bot
    await enroll_directly(db, VICTIM)
    for what, (body, content_type) in forged_requests(fake).items():
        resp = await http.post("/slack/events", data=body.encode(), headers={"Content-Type": content_type})
        assert resp.status == 404, what
        signed = await http.post("/slack/events", data=body.encode(),
                                 headers=signed_headers(body, content_type=content_type))
        assert signed.status == 404, what  # not there at all, whatever the signature
    for path in ("/slack/install", "/slack/oauth_redirect"):
        assert (await http.get(path, allow_redirects=False)).status == 404, path
    health = await http.get("/healthz")
    assert health.status == 200 and (await health.json())["ok"] is True
    assert await enrolled(db, VICTIM)
    assert not fake.calls_to("chat.postMessage") and not fake.calls_to("files.info")


async def test_socket_mode_delete_by_the_person_over_the_socket(socket_bot):
    fake, db, _ = socket_bot
    await enroll_directly(db, VICTIM)
    ack = await fake.socket_envelope("slash_commands", command_fields(VICTIM, "delete"))
    assert "deleted" in ack["payload"]["text"]
    assert not await enrolled(db, VICTIM)


# -- HTTP mode --------------------------------------------------------------------------------------

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http_bot(tmp_path_factory):
    from bot.engines.local import LocalEngine

    fake = FakeSlack()
    await fake.start()
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('http-mode') / 'voiceid.db'}"
    await upgrade(url)
    db = Database(url)
    engine = LocalEngine(workers=1)  # never asked to do anything: every request here is refused
    bot = await BotUnderTest(fake, bot_settings(fake, url), db, engine, cpu=shared_cpu()).start()
    yield fake, db, bot
    await bot.stop()
    await engine.close()
    await db.dispose()
    await fake.close()


def listeners_reached(bot: BotUnderTest) -> list[dict]:
    """The bodies of the requests that get past bolt's signature check, recorded by a middleware that runs
    after it and before any listener, while the request is being answered."""
    from bot.slack.app import BOLT

    reached: list[dict] = []

    async def record(body: dict, next) -> None:
        reached.append(body)
        await next()

    bot.client.server.app[BOLT].use(record)
    return reached


async def test_http_mode_refuses_unsigned_and_badly_signed_requests(http_bot):
    fake, db, bot = http_bot
    from storage.recordings import find_recording

    await enroll_directly(db, VICTIM)
    verified = listeners_reached(bot)
    for what, (body, content_type) in forged_requests(fake).items():
        assert (await bot.post(body, {"Content-Type": content_type})).status == 401, what
        wrong = signed_headers(body, secret="wrong-secret", content_type=content_type)
        assert (await bot.post(body, wrong)).status == 401, what
    assert verified == []  # refused before any listener: nothing was started that could still act later
    assert await enrolled(db, VICTIM)
    assert await find_recording(db, TEAM_ID, next(iter(fake.files))) is None
    assert not fake.calls_to("chat.postMessage") and not fake.calls_to("files.info")
    signed = await bot.command(VICTIM, "status")
    assert signed.status == 200 and "You are enrolled since" in await signed.text()
    assert [body["command"] for body in verified] == ["/enroll"]  # the record sees what gets through


async def test_http_mode_needs_a_signing_secret(http_bot):
    fake, db, bot = http_bot
    from bot.pools import CpuPool, TaskSet
    from bot.services.context import Services
    from bot.slack.app import SigningSecretMissing, build_bolt

    settings = bot_settings(fake, bot.settings.database_url, slack_signing_secret=None)
    with pytest.raises(SigningSecretMissing):
        build_bolt(Services(settings=settings, db=db, engine=bot.engine), cpu=CpuPool(), background=TaskSet(),
                   runner=None)
