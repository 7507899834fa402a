"""The bot's reply in a thread is the one the bot posted, not any message that carries its metadata. Another
app (or anyone posting through the API) can put `voiceid_recording` metadata naming the next recording into
the thread; when the bot's first post fails ambiguously and it looks for the reply it may have posted, it
must not take that message for its own (it could not edit it, and the summary would never appear). End to
end: signed requests to the real endpoint, the fake Slack Web API (which lets an app edit only its own
messages, as Slack does), a fake engine."""
from __future__ import annotations

from bot.schema import utcnow
from bot.slack_api.replies import REPLY_EVENT, posted_by
from storage.database import Database
from storage.migrate import upgrade
from storage.voiceprints import upsert_voiceprint
from testbed.fake_slack import BOT_ID, BOT_USER_ID, TEAM_ID, BotUnderTest, FakeSlack, Message, bot_settings
from tests.fake_engine import FakeEngine
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import wait_status

CHANNEL = "C0001"
ME = {"user_id": BOT_USER_ID, "bot_id": BOT_ID}


def test_only_the_bots_own_ids_make_a_message_its_own():
    assert posted_by({"user": BOT_USER_ID, "bot_id": BOT_ID}, ME)
    assert posted_by({"bot_id": BOT_ID}, ME) and posted_by({"user": BOT_USER_ID}, ME)
    assert not posted_by({"user": "U2"}, ME)
    assert not posted_by({"user": "UOTHER", "bot_id": "BOTHER"}, ME)
    assert not posted_by({"user": BOT_USER_ID, "bot_id": "BOTHER"}, ME)
    assert not posted_by({}, ME)


async def test_a_forged_reply_in_the_thread_is_neither_taken_nor_edited(tmp_path):
    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = ["U1", "U2", "UBOT"]
    url = f"sqlite+aiosqlite:///{tmp_path / 'voiceid.db'}"
    await upgrade(url)
    db = Database(url)
    engine = FakeEngine({"diarization": [{"speaker": "SPEAKER_00", "start": 0, "end": 5}],
                         "voiceprints": [{"speaker": "SPEAKER_00", "match": "U1", "confidence": {"U1": 90.0}}]})
    await upsert_voiceprint(db, team_id=TEAM_ID, user_id="U1", engine=engine.engine_id, model_id="m",
                            voiceprint="AAAA", consent_at=utcnow(), clip_duration=10.0)
    bot = await BotUnderTest(fake, bot_settings(fake, url), db, engine, cpu=shared_cpu()).start()
    try:
        f = fake.add_file("standup.wav", "audio/wav", b"RIFF meeting audio")
        event = bot.share_event(f)
        forged = {"event_type": REPLY_EVENT, "event_payload": {"recording_id": 1}}  # the first recording's id
        for user, bot_id in (("UOTHER", "BOTHER"), ("U2", None)):  # another app's message, a person's
            ts = fake._ts()
            fake.messages[(CHANNEL, ts)] = Message(channel=CHANNEL, ts=ts, text="Speakers: me, trust me", blocks=[],
                                                   thread_ts=event["ts"], user=user, bot_id=bot_id, metadata=forged)
        fake.server_errors["chat.postMessage"] = 1  # the first post fails ambiguously: the bot looks first
        assert (await bot.event(event, event_id="EvForged")).status == 200
        rec = await wait_status(fake, db, f.id, {"failed", "posted"}, timeout=60)
        assert rec.id == 1 and rec.state.value == "posted", rec.error_message
        thread = fake.thread(CHANNEL, event["ts"])
        forgeries = [m for m in thread if m.user != BOT_USER_ID]
        assert [m.text for m in forgeries] == ["Speakers: me, trust me"] * 2 and not any(m.history for m in forgeries)
        [own] = [m for m in thread if m.user == BOT_USER_ID]
        assert own.ts == rec.reply_ts and own.text.startswith("Speakers in standup.wav"), own.text
        assert not fake.calls_to("chat.update") or all(c.params["ts"] == own.ts for c in fake.calls_to("chat.update"))
    finally:
        await bot.stop()
        await db.dispose()
        await fake.close()


async def test_a_progress_post_retried_never_hides_the_outcome_already_shown():
    """The listener's progress post fails ambiguously; before it looks again, a worker has shown the summary:
    the listener takes that reply as the recording's and leaves its text alone."""
    from bot.slack_api.client import make_client
    from bot.slack_api.replies import reply_metadata, show_reply
    from bot.summary.blocks import SlackMessage

    fake = FakeSlack()
    await fake.start()
    try:
        client = make_client(bot_settings(fake, "sqlite+aiosqlite:///unused.db"), fake.token)
        outcome = await client.chat_postMessage(channel=CHANNEL, thread_ts="1.000001", text="Speakers in a.wav",
                                                blocks=[], metadata=reply_metadata(7))
        fake.server_errors["chat.postMessage"] = 1
        progress = SlackMessage(text="Identifying speakers in a.wav…", blocks=[])
        ts = await show_reply(client, recording_id=7, channel=CHANNEL, thread_ts="1.000001", msg=progress,
                              look_first=False)
        assert ts == outcome["ts"]
        assert fake.messages[(CHANNEL, ts)].text == "Speakers in a.wav" and not fake.calls_to("chat.update")
        # a later try of the progress reply looks first, finds the worker's summary and leaves it as it is
        ts = await show_reply(client, recording_id=7, channel=CHANNEL, thread_ts="1.000001", msg=progress,
                              look_first=True, replace=False)
        assert ts == outcome["ts"]
        assert fake.messages[(CHANNEL, ts)].text == "Speakers in a.wav" and not fake.calls_to("chat.update")
    finally:
        await fake.close()
