""""This is me" is a claim: shown as "claimed by", undone only by the claimant or the uploader, never a voiceprint;
"Enroll from this recording" is gone. Signed requests to the real endpoint, the fake Slack Web API, a fake
engine with a fixed identify result, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from contextlib import asynccontextmanager

from sqlmodel import select

from storage.database import Database
from storage.models import AuditEvent
from storage.voiceprints import get_voiceprint
from testbed.fake_slack import TEAM_ID, BotUnderTest, FakeSlack, bot_settings
from tests.fake_engine import FakeEngine
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import dms, enroll, wait_status

CHANNEL = "C0001"
ANN, BOB, CAT, UPLOADER = "UANN", "UBOB", "UCAT", "UUP"
OUTPUT = {
    "diarization": [{"speaker": "SPEAKER_00", "start": 0, "end": 10}, {"speaker": "SPEAKER_01", "start": 10, "end": 16},
                    {"speaker": "SPEAKER_02", "start": 16, "end": 19}],
    "voiceprints": [{"speaker": "SPEAKER_00", "match": ANN, "confidence": {ANN: 88.0}},
                    {"speaker": "SPEAKER_01", "match": None, "confidence": {ANN: 12.0}},
                    {"speaker": "SPEAKER_02", "match": None, "confidence": {ANN: 9.0}}],
}


@asynccontextmanager
async def summary_posted(db: Database):
    """Ann enrolled (her own clip), then a recording shared by the uploader, summarised in its thread."""
    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = [ANN, BOB, CAT, UPLOADER, "UBOT"]
    engine = FakeEngine(OUTPUT)
    bot = await BotUnderTest(fake, bot_settings(fake, db.url.render_as_string(hide_password=False)), db,
                             engine, cpu=shared_cpu()).start()
    try:
        assert "voiceprint is saved" in await enroll(bot, fake, ANN, b"RIFF Ann's own clip")
        rec = await share(bot, fake, db, "standup.wav")
        reply = await fake.one_reply(CHANNEL, rec.message_ts)
        yield Meeting(fake, bot, engine, db, rec.id, reply.ts)
    finally:
        await bot.stop()
        await fake.close()


async def share(bot: BotUnderTest, fake: FakeSlack, db: Database, name: str):
    f = fake.add_file(name, "audio/wav", b"RIFF meeting audio", user=UPLOADER)
    event = bot.share_event(f, user=UPLOADER)
    assert (await bot.event(event, event_id=f"Ev-{f.id}")).status == 200
    rec = await wait_status(fake, db, f.id, {"posted", "failed"}, timeout=60)
    assert rec.state.value == "posted", rec.error_message
    return rec


class Meeting:
    def __init__(self, fake: FakeSlack, bot: BotUnderTest, engine: FakeEngine, db: Database, rec_id: int, ts: str):
        self.fake, self.bot, self.engine, self.db, self.rec_id, self.ts = fake, bot, engine, db, rec_id, ts

    @property
    def blocks(self) -> list[dict]:
        return self.fake.messages[(CHANNEL, self.ts)].blocks

    def line(self, speaker: str) -> tuple[str, str]:
        """The speaker's text in the summary and its button's action."""
        [block] = [b for b in self.blocks if b.get("block_id") == f"speaker:{speaker}"]
        return block["text"]["text"], block["accessory"]["action_id"]

    async def press(self, user: str, action: str, speaker: str) -> str:
        """Press a speaker's button; returns the private reply the presser gets."""
        mine = lambda: [c for c in self.fake.calls_to("chat.postEphemeral") if c.params["user"] == user]
        n = len(mine())
        resp = await self.bot.press(user, action, f"{self.rec_id}:{speaker}", channel=CHANNEL, message_ts=self.ts)
        assert resp.status == 200
        [reply] = (await self.fake.wait_for(lambda: mine()[n:], what=f"reply to {user}"))
        assert "blocks" not in reply.params or not reply.params["blocks"]  # no enrollment offer, ever
        return reply.params["text"]


async def test_this_is_me_is_shown_as_a_claim_and_only_the_claimant_or_uploader_can_undo_it(db: Database):
    async with summary_posted(db) as m:
        reply = await m.press(BOB, "this_is_me", "SPEAKER_01")
        assert "claimed by you" in reply and "`/enroll`" in reply and "own voice" in reply, reply
        text, action = m.line("SPEAKER_01")
        assert f"claimed by <@{BOB}>" in text and action == "undo_claim"
        assert "confirmed" not in json.dumps(m.blocks) and "1 identified" in json.dumps(m.blocks)
        assert await get_voiceprint(db, TEAM_ID, BOB) is None

        assert "already claimed by <@UBOB>" in await m.press(CAT, "this_is_me", "SPEAKER_01")
        assert "already named" in await m.press(BOB, "this_is_me", "SPEAKER_00")
        assert "already" in await m.press(BOB, "this_is_me", "SPEAKER_02")  # one claim per person

        refused = await m.press(CAT, "undo_claim", "SPEAKER_01")
        assert f"Only <@{BOB}>" in refused and f"<@{UPLOADER}>" in refused, refused
        assert f"claimed by <@{BOB}>" in m.line("SPEAKER_01")[0]

        assert "undone" in await m.press(UPLOADER, "undo_claim", "SPEAKER_01")
        assert m.line("SPEAKER_01")[1] == "this_is_me"
        assert "claimed by" not in json.dumps(m.blocks)

        await m.press(BOB, "this_is_me", "SPEAKER_01")
        assert "undone" in await m.press(BOB, "undo_claim", "SPEAKER_01")
        assert "claimed by" not in json.dumps(m.blocks)

        assert f"Only <@{ANN}>" in await m.press(CAT, "not_me", "SPEAKER_00")
        assert "unknown" in await m.press(ANN, "not_me", "SPEAKER_00")
        assert f"<@{ANN}>" not in json.dumps(m.blocks)

        async with db.session() as s:
            rows = (await s.exec(select(AuditEvent).where(AuditEvent.target_type == "recording")
                                 .order_by(AuditEvent.id))).all()
        assert [(r.action.value, r.actor_id, r.detail["user_id"]) for r in rows] == [
            ("claim", BOB, BOB), ("unclaim", UPLOADER, None), ("claim", BOB, BOB), ("unclaim", BOB, None),
            ("unclaim", ANN, None)]


async def test_a_claim_never_makes_a_voiceprint_and_enrolling_from_the_recording_is_gone(db: Database):
    from storage.recordings import get_recording

    async with summary_posted(db) as m:
        await m.press(BOB, "this_is_me", "SPEAKER_01")
        assert [c for c in m.fake.calls_to("views.open") if c.params.get("trigger_id") == f"trig-{BOB}"] == []

        # The old button and modal have no listener left: bolt answers Slack's requests for them as unhandled.
        value = f"{m.rec_id}:SPEAKER_01"
        consent = {"consent": {"consent": {"type": "checkboxes", "selected_options": [{"value": "yes"}]}}}
        old_view = {"type": "modal", "callback_id": "enroll_recording_modal", "private_metadata": value,
                    "title": {"type": "plain_text", "text": "Enroll your voice"}, "blocks": []}
        assert (await m.bot.press(BOB, "enroll_from_recording", value, channel=CHANNEL, message_ts=m.ts)).status == 404
        assert (await m.bot.submit_view(BOB, old_view, consent)).status == 404

        # The real /enroll modal, submitted with the recording as the clip: not a file Bob uploaded, refused.
        assert (await m.bot.command(BOB)).status == 200
        opened = await m.fake.wait_for(
            lambda: [c for c in m.fake.calls_to("views.open") if c.params.get("trigger_id") == f"trig-{BOB}"],
            what="the /enroll modal")
        recording = m.fake.files[(await get_recording(db, m.rec_id)).file_id]
        clip = {"clip": {"clip": {"type": "file_input", "files": [m.fake.file_object(recording)]}}}
        assert (await m.bot.submit_view(BOB, opened[0].params["view"], clip | consent)).status == 200
        [refused] = await m.fake.wait_for(lambda: dms(m.fake, BOB), what="the answer to Bob's submission")
        assert refused.startswith(":warning: Your voice was not enrolled: the clip must be a file you uploaded"), refused
        assert await get_voiceprint(db, TEAM_ID, BOB) is None

        # The next recording is identified against enrolled voiceprints only: Bob's claim adds nothing.
        await share(m.bot, m.fake, db, "retro.wav")
        ann = await get_voiceprint(db, TEAM_ID, ANN)
        assert [v.label for v in m.engine.identify_requests[-1].voiceprints] == [ann.label]


async def test_simultaneous_claims_cannot_both_win(db: Database):
    import asyncio

    async with summary_posted(db) as m:
        replies = await asyncio.gather(m.press(BOB, "this_is_me", "SPEAKER_01"),
                                       m.press(CAT, "this_is_me", "SPEAKER_01"))
        assert sorted("claimed by you" in r for r in replies) == [False, True], replies
        winner = BOB if "claimed by you" in replies[0] else CAT
        assert f"already claimed by <@{winner}>" in replies[1 - [BOB, CAT].index(winner)]
        assert f"claimed by <@{winner}>" in m.line("SPEAKER_01")[0]
