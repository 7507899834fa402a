"""One `app.error` handler: a listener's unexpected exception becomes a private message with a ref for the person
who acted and a log entry with the details under the same ref — no traceback or internals in Slack."""
from __future__ import annotations

import logging

import pytest
import pytest_asyncio

from bot.summary.blocks import NOT_ME
from bot.summary.enroll_views import MODAL_CALLBACK
from tests.slack_e2e_support import slack_world

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    from tests.fake_engine import FakeEngine

    async with slack_world(FakeEngine(), tmp_path_factory.mktemp("slack-errors"), run_jobs=False) as w:
        yield w


async def test_a_garbage_button_value_tells_the_presser_a_ref_and_logs_it(world, caplog):
    fake, _, bot = world
    caplog.set_level(logging.ERROR, logger="bot.slack.app")
    await bot.press("U1", NOT_ME, "<!channel> not-a-button", channel="C0001", message_ts="1.1")
    [call] = await fake.wait_for(lambda: fake.calls_to("chat.postEphemeral"), what="the private reply")
    reply = call.params
    ref = reply["text"].split("(ref ")[1].split(")")[0]
    assert reply["channel"] == "C0001" and "Something went wrong on our side" in reply["text"]
    assert "not-a-button" not in reply["text"] and "ValueError" not in reply["text"]
    [entry] = [r for r in caplog.records if ref in r.getMessage()]
    assert entry.exc_info and "not a speaker button value" in str(entry.exc_info[1])


async def test_a_failure_without_a_channel_is_told_by_dm(world, monkeypatch):
    fake, _, bot = world

    async def broken(*_, **__):
        raise RuntimeError("database on fire at postgresql://secret@host/db")

    import bot.slack.enroll as listeners

    monkeypatch.setattr(listeners, "voiceprint_names", broken)
    view = {"type": "modal", "callback_id": MODAL_CALLBACK, "private_metadata": ""}
    dms_before = len(fake.calls_to("chat.postMessage"))
    await bot.submit_view("U2", view, {})
    [dm] = (await fake.wait_for(lambda: fake.calls_to("chat.postMessage")[dms_before:], what="the DM"))
    assert dm.params["channel"] == "U2" and "(ref " in dm.params["text"]
    assert "postgresql" not in dm.params["text"] and "fire" not in dm.params["text"]
