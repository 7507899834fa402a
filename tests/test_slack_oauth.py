"""Multi-workspace OAuth through the real endpoints: install, state check, the installation in our
database authorizing requests, token rotation for the scheduler, and `tokens_revoked`."""
from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from urllib.parse import unquote

import pytest
import pytest_asyncio

from bot.schema import utcnow
from storage.database import Database
from storage.migrate import upgrade
from testbed.fake_slack import TEAM_ID, BotUnderTest, FakeSlack, bot_settings
from tests.shared_cpu import shared_cpu

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def oauth_world(tmp_path_factory):
    from bot.engines.local import LocalEngine

    fake = FakeSlack()
    await fake.start()
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('oauth') / 'voiceid.db'}"
    await upgrade(url)
    db = Database(url)
    engine = LocalEngine(workers=1)  # never asked to do anything here; OAuth needs no model
    settings = bot_settings(fake, url, slack_bot_token=None, slack_client_id="111.222",
                            slack_client_secret="client-secret")
    bot = await BotUnderTest(fake, settings, db, engine, cpu=shared_cpu()).start()
    yield fake, db, bot
    await bot.stop()
    await engine.close()
    await db.dispose()
    await fake.close()


async def test_install_page_and_redirect_store_the_workspace(oauth_world):
    fake, db, bot = oauth_world
    from storage.workspaces import get_workspace

    page = await bot.client.get("/slack/install", allow_redirects=False)
    assert page.status in (200, 302)
    location = page.headers.get("Location") or await page.text()
    state = re.search(r"state=([\w\-]+)", location).group(1)
    scopes = set(unquote(re.search(r"[?&;]scope=([^&\"]*)", location).group(1)).split(","))
    assert {"commands", "files:read", "chat:write"} <= scopes, scopes

    forged = await bot.client.get("/slack/oauth_redirect", params={"code": "good-code", "state": "forged"})
    assert forged.status >= 400
    assert await get_workspace(db, TEAM_ID) is None

    # The browser sends back the state cookie set by the install page (Secure, so set here by hand over http).
    cookie = page.headers["Set-Cookie"].split(";")[0]
    done = await bot.client.get("/slack/oauth_redirect", params={"code": "good-code", "state": state},
                                headers={"Cookie": cookie})
    assert done.status == 200, await done.text()
    ws = await get_workspace(db, TEAM_ID)
    assert ws is not None and ws.bot_token == fake.token and ws.bot_refresh_token
    assert "xoxb" not in repr(ws)  # tokens never in reprs (and so never in logs)


async def test_requests_are_authorized_from_the_database(oauth_world):
    fake, _, bot = oauth_world
    resp = await bot.command("U1", "status")
    assert resp.status == 200 and "not enrolled" in await resp.text()
    assert any(c.method == "auth.test" and c.token == fake.token for c in fake.calls)


async def test_scheduler_rotates_expiring_tokens(oauth_world):
    _, db, bot = oauth_world
    from bot.slack_api.tokens import refresh_expiring_tokens
    from storage.workspaces import get_workspace, save_workspace

    ws = await get_workspace(db, TEAM_ID)
    await save_workspace(db, team_id=TEAM_ID, enterprise_id=None, is_enterprise_install=False,
                         bot_token_expires_at=utcnow() + timedelta(minutes=30))
    assert await refresh_expiring_tokens(bot.services) == 1
    rotated = await get_workspace(db, TEAM_ID)
    assert rotated.bot_token != ws.bot_token and rotated.bot_token.startswith("xoxb-rotated-")
    assert rotated.bot_token_expires_at > utcnow() + timedelta(hours=11)
    assert await bot.services.bot_token(TEAM_ID) == rotated.bot_token
    assert await refresh_expiring_tokens(bot.services) == 0  # nothing else is close to expiry


async def test_tokens_revoked_forgets_the_workspace(oauth_world):
    _, db, bot = oauth_world
    from bot.services.context import NotInstalled
    from storage.workspaces import get_workspace

    resp = await bot.event({"type": "tokens_revoked", "tokens": {"bot": ["UBOT"]}}, event_id="EvRevoked")
    assert resp.status == 200
    for _ in range(100):
        if await get_workspace(db, TEAM_ID) is None:
            break
        await asyncio.sleep(0.05)
    assert await get_workspace(db, TEAM_ID) is None
    with pytest.raises(NotInstalled):
        await bot.services.bot_token(TEAM_ID)


async def start_install(bot) -> tuple[str, str]:
    """`/slack/install` as a browser opens it: the state in Slack's authorize URL and the state cookie."""
    page = await bot.client.get("/slack/install", allow_redirects=False)
    assert page.status in (200, 302), await page.text()
    location = page.headers.get("Location") or await page.text()
    return re.search(r"state=([\w\-]+)", location).group(1), page.headers["Set-Cookie"].split(";")[0]


async def test_an_org_wide_install_is_refused_with_a_clear_page_and_nothing_stored(oauth_world):
    fake, db, bot = oauth_world
    from sqlmodel import select

    from storage.models import Workspace

    fake.enterprise_install = "E0001"  # an Enterprise Grid org admin installs for the whole org
    try:
        state, cookie = await start_install(bot)
        page = await bot.client.get("/slack/oauth_redirect", params={"code": "good-code", "state": state},
                                    headers={"Cookie": cookie})
        text = await page.text()
    finally:
        fake.enterprise_install = None
    assert page.status == 403 and page.content_type == "text/html", (page.status, text)
    assert "organization" in text and "each workspace" in text
    async with db.session() as s:
        assert (await s.exec(select(Workspace).where(Workspace.enterprise_id == "E0001"))).all() == []
    # The token Slack issued for the org is revoked, not left working where nothing answers for it.
    assert fake.revoked and fake.revoked[-1] not in fake.tokens

    # The same flow for a single workspace still installs.
    state, cookie = await start_install(bot)
    done = await bot.client.get("/slack/oauth_redirect", params={"code": "good-code", "state": state},
                                headers={"Cookie": cookie})
    assert done.status == 200, await done.text()


async def test_install_states_are_bounded(oauth_world, monkeypatch):
    _, db, bot = oauth_world
    from sqlalchemy import func, update
    from sqlmodel import select

    from bot.slack import installation
    from storage.models import OAuthState

    async def rows() -> int:
        async with db.session() as s:
            return (await s.exec(select(func.count()).select_from(OAuthState))).one()

    cap = await rows() + 3
    monkeypatch.setattr(installation, "MAX_PENDING_INSTALLS", cap, raising=False)
    for _ in range(3):
        await start_install(bot)
    assert await rows() == cap
    refused = await bot.client.get("/slack/install", allow_redirects=False)
    text = await refused.text()
    assert refused.status == 503 and "Too many" in text and "few minutes" in text, (refused.status, text)
    assert refused.headers.get("Retry-After") and await rows() == cap

    async with db.session() as s:  # ten minutes later, every one of them has expired
        await s.exec(update(OAuthState).values(expires_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    await start_install(bot)
    assert await rows() == 1  # the expired ones were swept, and installs start again
