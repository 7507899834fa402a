"""Several voiceprints per person through Slack: the `/enroll` modal's name field, up to three named voiceprints
each with its own consent, replacing one by name, `/enroll status` listing them (names escaped), `/enroll delete
NAME` and `/enroll delete`, delete winning over an enrollment in flight, and a recording naming a person with two
voiceprints once. Signed requests to the real endpoint, the fake Slack Web API, SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from storage.database import Database
from storage.enrollments import enrollment_jobs
from storage.models import AuditAction, AuditEvent
from storage.voiceprints import list_voiceprints
from testbed.fake_slack import TEAM_ID, BotUnderTest, FakeSlack, bot_settings
from tests.fake_engine import FakeEngine
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import dms, enroll, submit_enrollment, wait_status

USER = "UMANY"
CHANNEL = "C0001"
HOSTILE = "*Head* <!here> @chan"


@asynccontextmanager
async def world(db: Database):
    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = [USER, "UOTHER", "UBOT"]
    engine = FakeEngine()
    bot = await BotUnderTest(fake, bot_settings(fake, db.url.render_as_string(hide_password=False)), db,
                             engine, cpu=shared_cpu()).start()
    try:
        yield fake, engine, bot
    finally:
        if engine.gate is not None:
            engine.gate.set()
        await bot.stop()
        await fake.close()


def clip(n: int) -> bytes:
    return f"RIFF my voice through microphone {n}".encode()


async def status(bot: BotUnderTest) -> str:
    return await (await bot.command(USER, "status")).text()


async def command(bot: BotUnderTest, text: str) -> str:
    return await (await bot.command(USER, text)).text()


def last_modal(fake: FakeSlack) -> dict:
    return fake.calls_to("views.open")[-1].params["view"]


async def test_three_named_voiceprints_each_with_its_consent_listed_escaped_and_no_fourth(db: Database):
    async with world(db) as (fake, _, bot):
        first = await enroll(bot, fake, USER, clip(1))
        assert first.startswith(":white_check_mark: Your voiceprint is saved as “default” (1 of at most 3)"), first
        [name_field] = [b["element"] for b in last_modal(fake)["blocks"] if b.get("block_id") == "name"]
        assert name_field["initial_value"] == "default" and name_field["max_length"] == 24
        assert "saved as “phone”" in await enroll(bot, fake, USER, clip(2), voiceprint="  Phone ")
        third = await enroll(bot, fake, USER, clip(3), voiceprint=HOSTILE)
        modal = last_modal(fake)  # opened for the third one
        listed = [b for b in modal["blocks"] if b["type"] == "context"]
        assert "“default”" in str(listed) and "“phone”" in str(listed), "the modal lists their voiceprints"
        assert "initial_value" not in str([b for b in modal["blocks"] if b.get("block_id") == "name"])
        assert "(3 of at most 3)" in third and "<!here>" not in third and "&lt;!here&gt;" in third, third

        refused = await enroll(bot, fake, USER, clip(4), voiceprint="laptop")
        assert refused.startswith("errors:") and "already have 3 voiceprints" in refused, refused
        assert "“*head* <!here> @chan”" in refused, "a modal error is plain text: shown as typed"
        assert await enrollment_jobs(db) == []

        text = await status(bot)
        assert text.startswith("You are enrolled since") and "3 voiceprints" in text, text
        assert "“default”" in text and "“phone”" in text
        assert "<!here>" not in text and "*head*" not in text and "&lt;!here&gt;" in text, text
        mine = await list_voiceprints(db, TEAM_ID, USER)
        assert [v.name for v in mine] == ["default", "phone", HOSTILE.lower()]
        assert len({v.consent_at for v in mine}) == 3 and all(v.consent_text.startswith("I agree") for v in mine)
        assert len({v.label for v in mine}) == 3


async def test_reusing_a_name_needs_the_box_and_replaces_only_that_voiceprint(db: Database):
    async with world(db) as (fake, _, bot):
        await enroll(bot, fake, USER, clip(1))
        await enroll(bot, fake, USER, clip(2), voiceprint="phone")
        before = {v.name: v for v in await list_voiceprints(db, TEAM_ID, USER)}
        refused = await enroll(bot, fake, USER, clip(3), voiceprint="PHONE")
        assert "already have a voiceprint named “phone”" in refused and "tick the box" in refused, refused
        replaced = await enroll(bot, fake, USER, clip(3), voiceprint="phone", replace=True)
        assert "voiceprint is replaced as “phone” (2 of at most 3)" in replaced, replaced
        after = {v.name: v for v in await list_voiceprints(db, TEAM_ID, USER)}
        assert after["phone"].voiceprint != before["phone"].voiceprint and after["phone"].label == before["phone"].label
        assert after["default"].voiceprint == before["default"].voiceprint, "the other voiceprint is untouched"


async def test_bad_names_are_refused_in_the_modal_and_nothing_is_queued(db: Database):
    async with world(db) as (fake, _, bot):
        for name, why in (("x" * 25, "at most 24 characters"), ("   ", "Give the voiceprint a name"),
                          ("All", "kept for `/enroll delete`"), ("@bob", "starting with @")):
            body = await submit_enrollment(bot, fake, USER, clip(1), voiceprint=name)
            assert body["response_action"] == "errors" and why in body["errors"]["name"], body
        assert await enrollment_jobs(db) == [] and await list_voiceprints(db, TEAM_ID, USER) == []


async def test_delete_one_by_name_then_all(db: Database):
    async with world(db) as (fake, _, bot):
        await enroll(bot, fake, USER, clip(1))
        await enroll(bot, fake, USER, clip(2), voiceprint="R&D room")
        await enroll(bot, fake, USER, clip(3), voiceprint="phone")
        # Slack sends `&`, `<` and `>` in a command's text as entities.
        one = await command(bot, "delete r&amp;d ROOM")
        assert one.startswith("Your voiceprint “r&amp;d room” is deleted. Your other 2 stay"), one
        assert [v.name for v in await list_voiceprints(db, TEAM_ID, USER)] == ["default", "phone"]
        missing = await command(bot, "delete headset")
        assert "no voiceprint named “headset”" in missing and "“default”, “phone”" in missing, missing
        everything = await command(bot, "delete all")
        assert everything.startswith("Your 2 voiceprints are deleted"), everything
        assert await list_voiceprints(db, TEAM_ID, USER) == []
        async with db.session() as s:
            from sqlmodel import select

            deletes = (await s.exec(select(AuditEvent).where(AuditEvent.action == AuditAction.delete)
                                    .order_by(AuditEvent.id))).all()
        assert [(e.detail["count"], e.detail["all"]) for e in deletes] == [(1, False), (2, True)]
        assert "r&d" not in str([e.detail for e in deletes]), "the audit log keeps no name typed"


async def test_deleting_one_voiceprint_wins_over_an_enrollment_in_flight(db: Database):
    async with world(db) as (fake, engine, bot):
        await enroll(bot, fake, USER, clip(1))
        engine.gate, engine.voiceprint_started = asyncio.Event(), asyncio.Event()
        answer = await submit_enrollment(bot, fake, USER, clip(2), voiceprint="phone")
        assert answer["response_action"] == "update", answer
        await asyncio.wait_for(engine.voiceprint_started.wait(), 30)
        reply = await command(bot, "delete default")
        assert "“default” is deleted" in reply and "enrollment you had started was cancelled" in reply, reply
        engine.gate.set()
        await bot.drain()
        assert await list_voiceprints(db, TEAM_ID, USER) == [], "neither the deleted nor the one in flight"


async def test_the_limit_holds_when_enrollments_race(db: Database):
    async with world(db) as (fake, engine, bot):
        await enroll(bot, fake, USER, clip(1))
        await enroll(bot, fake, USER, clip(2), voiceprint="phone")
        engine.gate = asyncio.Event()
        before = len(dms(fake, USER))
        for n, name in ((3, "laptop"), (4, "headset")):  # both pass the modal: neither is saved yet
            body = await submit_enrollment(bot, fake, USER, clip(n), voiceprint=name)
            assert body["response_action"] == "update", body
        engine.gate.set()
        answers = await fake.wait_for(lambda: dms(fake, USER)[before:] if len(dms(fake, USER)) - before >= 2
                                      else None, what="both answers")
        assert sorted("is saved as" in a for a in answers) == [False, True], answers
        assert any("not enrolled" in a and "already have 3 voiceprints" in a for a in answers), answers
        assert len(await list_voiceprints(db, TEAM_ID, USER)) == 3


async def test_a_person_with_two_voiceprints_is_named_once_under_labels_that_do_not_name_them(db: Database):
    async with world(db) as (fake, engine, bot):
        await enroll(bot, fake, USER, clip(1))
        await enroll(bot, fake, USER, clip(2), voiceprint="phone")
        headset, phone = await list_voiceprints(db, TEAM_ID, USER)
        # The engine matched by label: the headset print to one speaker and the phone print to the other.
        engine.identify_output = {
            "diarization": [{"speaker": "SPEAKER_00", "start": 0, "end": 5},
                            {"speaker": "SPEAKER_01", "start": 5, "end": 8}],
            "identification": [
                {"speaker": headset.label, "start": 0, "end": 5, "diarizationSpeaker": "SPEAKER_00",
                 "match": headset.label},
                {"speaker": phone.label, "start": 5, "end": 8, "diarizationSpeaker": "SPEAKER_01", "match": phone.label}],
            "voiceprints": [
                {"speaker": "SPEAKER_00", "match": headset.label, "confidence": {headset.label: 92.0, phone.label: 70.0}},
                {"speaker": "SPEAKER_01", "match": phone.label, "confidence": {headset.label: 40.0, phone.label: 81.0}}]}
        f = fake.add_file("standup.m4a", "audio/mp4", b"RIFF meeting audio")
        event = bot.share_event(f)
        assert (await bot.event(event, event_id="Ev-two")).status == 200
        rec = await wait_status(fake, db, f.id, {"posted", "failed"}, timeout=60)
        assert rec.state.value == "posted", rec.error_message
        [request] = engine.identify_requests
        assert sorted(v.label for v in request.voiceprints) == sorted([headset.label, phone.label])
        assert all(USER not in v.label for v in request.voiceprints), "engines never see who a voiceprint is"
        summary = [c.params for c in fake.calls_to("chat.update") if c.params.get("ts") == rec.reply_ts][-1]
        assert str(summary["blocks"]).count(f"<@{USER}>") == 1 and "Unknown speaker 1" in str(summary["blocks"])
        assert headset.label not in str(rec.result) and phone.label not in str(rec.result)
        assert rec.result["voiceprints"] == [
            {"speaker": "SPEAKER_00", "match": USER, "confidence": {USER: 92.0}},
            {"speaker": "SPEAKER_01", "match": None, "confidence": {USER: 81.0}}], "best of their two, named once"


async def test_an_admins_delete_takes_all_of_a_persons_voiceprints(db: Database):
    person = "UMANY"  # a Slack-shaped id: mentions carry only those
    async with world(db) as (fake, _, bot):
        fake.admins.add("UADMIN")
        await enroll(bot, fake, person, clip(1))
        await enroll(bot, fake, person, clip(2), voiceprint="phone")
        n = len(fake.responses)
        assert (await bot.command("UADMIN", f"delete <@{person}|many>")).status == 200
        [answer] = await fake.wait_for(lambda: fake.responses[n:], what="the admin's answer")
        assert f"Done for <@{person}>" in answer["text"], answer
        assert await list_voiceprints(db, TEAM_ID, person) == []
