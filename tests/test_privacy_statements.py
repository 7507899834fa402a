"""What people are told about their voice matches what the configured engine does with it: `/enroll help`,
the enrollment modal and its consent, for `ENGINE=local`, `server` and `pyannoteai`."""
from __future__ import annotations

import pytest

from bot.config import EngineKind
from bot.summary import enroll_views as views
from testbed.fake_slack import BotUnderTest, FakeSlack, bot_settings
from tests.shared_cpu import shared_cpu

THIRD_PARTY = "pyannoteAI, a third-party service"
OWN_SERVER = "this Voice ID's own engine server"
STAYS_HERE = "neither they nor your voiceprint are sent anywhere else"
SLACK_KEEPS = "Slack keeps the file you upload here in your Slack files until you delete it"
EXPECTED = {EngineKind.local: STAYS_HERE, EngineKind.server: OWN_SERVER, EngineKind.pyannoteai: THIRD_PARTY}
SLACK_OPTION_MAX = 75


def modal_texts(view: dict) -> str:
    return str(view["blocks"])


@pytest.mark.parametrize("engine", list(EngineKind))
def test_each_text_names_where_this_engine_sends_voice(engine: EngineKind):
    others = [s for k, s in EXPECTED.items() if k is not engine]
    for text in (views.help_text(engine, result_days=30, audit_days=365), views.explanation(30, engine),
                 modal_texts(views.enroll_modal(retention_days=30, engine=engine, existing=None))):
        assert EXPECTED[engine] in text
        assert not [s for s in others if s in text], text


@pytest.mark.parametrize("engine", list(EngineKind))
def test_no_text_claims_the_uploaded_clip_is_gone(engine: EngineKind):
    """Voice ID deletes its own copy; the file uploaded through the modal stays in Slack until the person deletes it."""
    modal = modal_texts(views.enroll_modal(retention_days=30, engine=engine, existing=None))
    for text in (views.help_text(engine, result_days=30, audit_days=365), views.explanation(30, engine), modal):
        assert "deleted right after" not in text
        assert "deletes its own copy" in text
    assert SLACK_KEEPS in views.help_text(engine, result_days=30, audit_days=365) and SLACK_KEEPS in modal and "Delete file" in modal


@pytest.mark.parametrize("engine", list(EngineKind))
def test_consent_fits_slack_option_limits_and_names_a_third_party(engine: EngineKind):
    view = views.enroll_modal(retention_days=30, engine=engine, existing=None)
    [consent] = [b for b in view["blocks"] if b.get("block_id") == views.CONSENT_BLOCK]
    [option] = consent["element"]["options"]
    assert len(option["text"]["text"]) <= SLACK_OPTION_MAX
    assert len(option["description"]["text"]) <= SLACK_OPTION_MAX
    assert ("pyannoteAI" in option["description"]["text"]) is (engine is EngineKind.pyannoteai)


@pytest.fixture
async def fake_slack():
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.close()


@pytest.mark.parametrize("engine", [EngineKind.pyannoteai, EngineKind.server])
async def test_enroll_help_and_modal_follow_the_configured_engine(engine: EngineKind, fake_slack, sqlite_db):
    """Through the signed endpoint: the running bot's texts come from its ENGINE setting."""
    from bot.engines.factory import make_engine

    settings = bot_settings(fake_slack, str(sqlite_db.url), engine=engine, pyannoteai_api_key="pa-test",
                            pyannoteai_api_url="http://127.0.0.1:9", engine_url="http://127.0.0.1:9",
                            engine_api_key="engine-test")
    remote = make_engine(settings)  # never called: help and the modal need no engine job
    bot = await BotUnderTest(fake_slack, settings, sqlite_db, remote, run_jobs=False, cpu=shared_cpu()).start()
    try:
        help_reply = await (await bot.command("U1", "help")).text()
        unknown_reply = await (await bot.command("U1", "bogus")).text()
        await bot.command("U1")
        call = await fake_slack.wait_for(lambda: fake_slack.calls_to("views.open"), what="enroll modal")
        modal = modal_texts(call[-1].params["view"])
    finally:
        await bot.stop()
        await remote.close()
    for text in (help_reply, unknown_reply, modal):
        assert EXPECTED[engine] in text
        assert STAYS_HERE not in text
