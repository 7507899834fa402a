""""Is this you?": a speaker left unknown whose best match falls in [NEAR_MATCH_FLOOR, threshold) is asked about
privately, by DM, to the person it probably is (a member of the channel at that moment), never in the channel.
Yes is a claim, shown as one; No is remembered (no second DM, also after a restart and Identify again); only the
person asked can answer, checked against the stored question. Signed requests to the real endpoint, the fake Slack
Web API, a fake engine with a fixed identify result, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

from sqlmodel import select

from bot.services.people import export_person
from storage.database import Database
from storage.models import NearMatch
from testbed.fake_slack import TEAM_ID, BotUnderTest, FakeSlack, bot_settings
from tests.fake_engine import FakeEngine
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import enroll, press_identify_again, wait_status

CHANNEL = "C0001"
ANN, BOB, CAT, UPLOADER = "UANN", "UBOB", "UCAT", "UUP"
OUTPUT = {
    "diarization": [{"speaker": "SPEAKER_00", "start": 0, "end": 10}, {"speaker": "SPEAKER_01", "start": 10, "end": 16},
                    {"speaker": "SPEAKER_02", "start": 16, "end": 19}, {"speaker": "SPEAKER_01", "start": 30, "end": 32}],
    # Ann matches; SPEAKER_01 falls just under the threshold for Bob; SPEAKER_02 is nobody close.
    "voiceprints": [{"speaker": "SPEAKER_00", "match": ANN, "confidence": {ANN: 90.0, BOB: 20.0}},
                    {"speaker": "SPEAKER_01", "match": None, "confidence": {ANN: 30.0, BOB: 68.0}},
                    {"speaker": "SPEAKER_02", "match": None, "confidence": {ANN: 12.0, BOB: 41.0}}],
}
SETTINGS = {"match_threshold": 75.0, "near_match_floor": 50.0, "identify_again_recording_cooldown_minutes": 0,
            "identify_again_person_cooldown_minutes": 0}


class LeavingEngine(FakeEngine):
    """Bob leaves the channel while the engine runs: his voiceprint took part, but he is no member when asked."""

    def __init__(self, output: dict, fake: FakeSlack):
        super().__init__(output)
        self.fake = fake

    async def submit_identify(self, request):
        self.fake.members[CHANNEL] = [m for m in self.fake.members[CHANNEL] if m != BOB]
        return await super().submit_identify(request)


def questions(fake: FakeSlack, user: str) -> list:
    """The "Is this you?" DMs to `user`."""
    return [c for c in fake.calls_to("chat.postMessage")
            if c.params.get("channel") == user and "Is this you?" in c.params.get("text", "")]


def dm_texts(fake: FakeSlack, user: str) -> list[str]:
    return [c.params.get("text", "") for c in fake.calls_to("chat.postMessage") if c.params.get("channel") == user]


class World:
    def __init__(self, fake: FakeSlack, db: Database, settings):
        self.fake, self.db, self.settings, self.bot = fake, db, settings, None

    async def start(self, engine) -> BotUnderTest:
        self.bot = await BotUnderTest(self.fake, self.settings, self.db, engine, cpu=shared_cpu()).start()
        return self.bot

    async def share(self, name: str = "standup.wav"):
        f = self.fake.add_file(name, "audio/wav", b"RIFF meeting audio", user=UPLOADER)
        event = self.bot.share_event(f, user=UPLOADER)
        assert (await self.bot.event(event, event_id=f"Ev-{f.id}")).status == 200
        rec = await wait_status(self.fake, self.db, f.id, {"posted", "failed"}, timeout=60)
        assert rec.state.value == "posted", rec.error_message
        reply = await self.fake.one_reply(CHANNEL, rec.message_ts)
        return rec, reply.ts

    async def answer(self, user: str, action: str, value: str, dm_ts: str) -> None:
        assert (await self.bot.press(user, action, value, channel=f"D{user}", message_ts=dm_ts)).status == 200

    async def rows(self) -> list[NearMatch]:
        async with self.db.session() as s:
            return list((await s.exec(select(NearMatch).order_by(NearMatch.id))).all())


@asynccontextmanager
async def world(db: Database, engine_for=lambda fake: FakeEngine(OUTPUT), **overrides):
    """Ann and Bob enrolled (their own clips), Cat and the uploader not; all in the channel."""
    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = [ANN, BOB, CAT, UPLOADER, "UBOT"]
    w = World(fake, db, bot_settings(fake, db.url.render_as_string(hide_password=False), **(SETTINGS | overrides)))
    await w.start(engine_for(fake))
    try:
        assert "voiceprint is saved" in await enroll(w.bot, fake, ANN, b"RIFF Ann's own clip")
        assert "voiceprint is saved" in await enroll(w.bot, fake, BOB, b"RIFF Bob's own clip")
        yield w
    finally:
        await w.bot.stop()
        await fake.close()


def channel_posts(fake: FakeSlack) -> str:
    """Everything the bot wrote into the channel (messages, edits, ephemerals), as one text."""
    calls = [c.params for m in ("chat.postMessage", "chat.update", "chat.postEphemeral") for c in fake.calls_to(m)
             if c.params.get("channel") == CHANNEL]
    return json.dumps(calls)


async def asked_bob(w):
    """A recording shared and Bob asked about it: its message ts, his stored question, the summary as it was then."""
    _, ts = await w.share()
    await w.fake.wait_for(lambda: questions(w.fake, BOB), what="the question to Bob")
    [row] = await w.rows()
    return ts, row, json.dumps(w.fake.messages[(CHANNEL, ts)].blocks)


async def test_only_the_person_it_probably_is_is_asked_and_yes_is_a_claim(db: Database):
    async with world(db) as w:
        _, ts = await w.share()
        [question] = await w.fake.wait_for(lambda: questions(w.fake, BOB), what="the question to Bob")
        assert questions(w.fake, ANN) == questions(w.fake, CAT) == questions(w.fake, UPLOADER) == []
        blocks = json.dumps(question.params["blocks"])
        assert f"https://fake.slack.com/archives/{CHANNEL}/p{ts.replace('.', '')}" in blocks
        assert "0:08 talk time" in blocks and "First turns at 0:10, 0:30" in blocks, blocks
        assert "Yes, that's me" in blocks and '"No"' in blocks

        # Nothing in the channel says a near match existed: Bob is not named, nobody sees a hint of him.
        assert BOB not in channel_posts(w.fake) and "close" not in channel_posts(w.fake)
        assert "Unknown speaker 1" in json.dumps(w.fake.messages[(CHANNEL, ts)].blocks)

        [row] = await w.rows()
        assert (row.user_id, row.speaker, row.state.value) == (BOB, "SPEAKER_01", "sent")
        await w.answer(BOB, "near_match_yes", str(row.id), row.dm_ts)
        await w.fake.wait_for(lambda: "claimed by you" in w.fake.messages[(BOB, row.dm_ts)].text, what="DM updated")
        assert "actions" not in json.dumps(w.fake.messages[(BOB, row.dm_ts)].blocks)
        [line] = [b for b in w.fake.messages[(CHANNEL, ts)].blocks if b.get("block_id") == "speaker:SPEAKER_01"]
        assert f"claimed by <@{BOB}>" in line["text"]["text"] and line["accessory"]["action_id"] == "undo_claim"
        assert "1 identified" in json.dumps(w.fake.messages[(CHANNEL, ts)].blocks)  # a claim names nobody
        assert [r.state.value for r in await w.rows()] == ["yes"]

        before = len(dm_texts(w.fake, BOB))
        await w.answer(BOB, "near_match_no", str(row.id), row.dm_ts)
        [again] = await w.fake.wait_for(lambda: dm_texts(w.fake, BOB)[before:], what="the second answer")
        assert "answered this question already" in again
        assert f"claimed by <@{BOB}>" in json.dumps(w.fake.messages[(CHANNEL, ts)].blocks)


async def test_no_is_remembered_across_a_restart_and_identify_again(db: Database):
    async with world(db) as w:
        rec, ts = await w.share()
        await w.fake.wait_for(lambda: questions(w.fake, BOB), what="the question to Bob")
        [row] = await w.rows()
        await w.answer(BOB, "near_match_no", str(row.id), row.dm_ts)
        await w.fake.wait_for(lambda: "not be asked about this recording again" in
                              w.fake.messages[(BOB, row.dm_ts)].text, what="DM updated")
        assert "claimed" not in json.dumps(w.fake.messages[(CHANNEL, ts)].blocks)

        await w.bot.stop()  # a restart: a new process over the same database
        engine = FakeEngine(OUTPUT)
        await w.start(engine)
        reply = await press_identify_again(w.bot, w.fake, UPLOADER, str(rec.id), ts)
        assert "summary will be updated" in reply["text"], reply
        await w.fake.wait_for(lambda: engine.identify_requests, what="the re-run")
        rec2 = await wait_status(w.fake, w.db, rec.file_id, {"posted", "failed"}, timeout=60)
        assert rec2.state.value == "posted" and rec2.notified_at is not None
        assert len(questions(w.fake, BOB)) == 1
        assert [r.state.value for r in await w.rows()] == ["no"]
        exported = await export_person(w.db, TEAM_ID, BOB, result_days=30, audit_days=365)
        assert [(q["recording_id"], q["speaker"], q["state"]) for q in exported["is_this_you_questions"]] == [
            (rec.id, "SPEAKER_01", "no")]
        assert (await export_person(w.db, TEAM_ID, ANN, result_days=30, audit_days=365))["is_this_you_questions"] == []


async def test_an_unanswered_question_is_dropped_when_the_person_deletes_their_voiceprints(db: Database):
    async with world(db) as w:
        await w.share()
        await w.fake.wait_for(lambda: questions(w.fake, BOB), what="the question to Bob")
        [row] = await w.rows()
        assert (await w.bot.command(BOB, "delete")).status == 200
        for _ in range(100):
            if not await w.rows():
                break
            await asyncio.sleep(0.1)
        assert await w.rows() == []
        n = len(dm_texts(w.fake, BOB))
        await w.answer(BOB, "near_match_yes", str(row.id), row.dm_ts)
        [answer] = await w.fake.wait_for(lambda: dm_texts(w.fake, BOB)[n:], what="the answer")
        assert "no longer open" in answer


async def test_a_press_by_anyone_else_is_refused_and_changes_nothing(db: Database):
    async with world(db) as w:
        ts, row, summary = await asked_bob(w)
        for value in (str(row.id), "99999", "1:SPEAKER_01", "-1"):
            n = len(dm_texts(w.fake, CAT))
            await w.answer(CAT, "near_match_yes", value, row.dm_ts)
            [answer] = await w.fake.wait_for(lambda n=n: dm_texts(w.fake, CAT)[n:], what="Cat's answer")
            assert "nothing was changed" in answer and BOB not in answer, answer
        assert "someone else" in dm_texts(w.fake, CAT)[-4]
        assert json.dumps(w.fake.messages[(CHANNEL, ts)].blocks) == summary
        assert [r.state.value for r in await w.rows()] == ["sent"]
        assert "actions" in json.dumps(w.fake.messages[(BOB, row.dm_ts)].blocks)  # Bob can still answer


async def test_a_person_no_longer_in_the_channel_is_not_asked(db: Database):
    async with world(db, engine_for=lambda fake: LeavingEngine(OUTPUT, fake)) as w:
        await w.share()
        assert questions(w.fake, BOB) == []
        assert [(r.user_id, r.state.value) for r in await w.rows()] == [(BOB, "skipped")]
        assert BOB not in channel_posts(w.fake)


async def test_hostile_file_names_are_escaped_in_the_question(db: Database):
    async with world(db) as w:
        await w.share("<!channel> *urgent* <https://evil.example|x> @here.wav")
        [question] = await w.fake.wait_for(lambda: questions(w.fake, BOB), what="the question to Bob")
        text = json.dumps(question.params)
        assert "<!channel>" not in text and "<https://evil" not in text and "*urgent*" not in text
        assert "&lt;!channel&gt;" in text


async def test_a_floor_of_zero_asks_nobody(db: Database):
    async with world(db, near_match_floor=0) as w:
        await w.share()
        assert questions(w.fake, BOB) == [] and await w.rows() == []


async def test_a_crash_while_the_question_is_on_its_way_never_sends_it_twice(db: Database):
    """The question is marked sent before its DM (at most once): the worker dies inside the DM call, the call
    goes through to nobody, and the worker taking the recording over finishes it without asking again."""
    async with world(db) as w:
        dm = w.fake.gate("chat.postMessage", lambda p: "Is this you?" in p.get("text", ""))
        f = w.fake.add_file("standup.wav", "audio/wav", b"RIFF meeting audio", user=UPLOADER)
        assert (await w.bot.event(w.bot.share_event(f, user=UPLOADER), event_id=f"Ev-{f.id}")).status == 200
        await w.fake.wait_for(dm.reached.is_set, what="the question on its way")
        await w.bot.crash()
        dm.open()
        await w.start(FakeEngine(OUTPUT))
        rec = await wait_status(w.fake, w.db, f.id, {"posted", "failed"}, timeout=60)
        assert rec.state.value == "posted"
        assert len(questions(w.fake, BOB)) == 1
        assert [r.state.value for r in await w.rows()] == ["sent"]


async def test_a_question_whose_recording_result_expired_is_gone(db: Database):
    from datetime import timedelta

    from storage.models import utcnow
    from storage.retention import purge_expired

    async with world(db) as w:
        ts, row, summary = await asked_bob(w)
        await purge_expired(w.db, result_days=1, audit_days=365, now=utcnow() + timedelta(days=2))
        assert await w.rows() == []
        n = len(dm_texts(w.fake, BOB))
        await w.answer(BOB, "near_match_yes", str(row.id), row.dm_ts)
        [answer] = await w.fake.wait_for(lambda: dm_texts(w.fake, BOB)[n:], what="the answer")
        assert "no longer open" in answer
        assert json.dumps(w.fake.messages[(CHANNEL, ts)].blocks) == summary
