"""Requests to the real endpoint that need no speech: signatures, URL verification, health, /enroll texts.

They run everywhere (no speech data, no models): the engine is never asked to do anything here.
"""
from __future__ import annotations

import time

import pytest
import pytest_asyncio

from testbed.fake_slack import signed_headers
from tests.slack_e2e_support import slack_world

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(local_engine, tmp_path_factory):
    async with slack_world(local_engine, tmp_path_factory.mktemp("slack-requests")) as w:
        yield w


async def test_signature_checks_and_url_verification(world):
    _fake, _db, bot = world
    body = '{"type": "url_verification", "challenge": "abc123", "token": "x"}'
    resp = await bot.post(body, signed_headers(body))
    assert resp.status == 200 and (await resp.json())["challenge"] == "abc123"
    bad = signed_headers(body, secret="wrong-secret")
    assert (await bot.post(body, bad)).status == 401
    stale = signed_headers(body, timestamp=int(time.time()) - 600)
    assert (await bot.post(body, stale)).status == 401
    health = await bot.client.get("/healthz")
    assert health.status == 200 and (await health.json())["ok"] is True


async def test_enroll_help_status_and_modal_contents(world):
    fake, _db, bot = world
    resp = await bot.command("U1688", "help")
    assert "/enroll delete" in (await resp.text())
    resp = await bot.command("U1688", "status")
    assert "not enrolled" in (await resp.text())
    await bot.command("U1688")
    view = (await fake.wait_for(lambda: fake.calls_to("views.open"), what="modal")).pop().params["view"]
    assert view["callback_id"] == "enroll_modal"
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert blocks["clip"]["element"]["type"] == "file_input"
    assert blocks["consent"]["element"]["type"] == "checkboxes"
    text = str(view)
    assert "/enroll delete" in text and ("30 s" in text or "30 seconds" in text), text
