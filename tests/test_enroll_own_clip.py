"""Only a person's own clip makes their voiceprint: the clip of an enrollment must be a file the submitter
uploaded (Slack's `files.info` says who), checked before anything is downloaded. Slack's file input only
offers the person's own uploads; this holds even if a submission names another person's file.
Signed requests to the real endpoint, the fake Slack Web API, SQLite and PostgreSQL."""
from __future__ import annotations

from storage.database import Database
from storage.voiceprints import get_voiceprint
from testbed.fake_slack import TEAM_ID, BotUnderTest, FakeSlack, bot_settings
from tests.fake_engine import FakeEngine
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import dms

VICTIM, ATTACKER = "UVICTIM", "UATTACKER"
CLIP = b"RIFF the victim's own voice"


async def submit_with_file(bot: BotUnderTest, fake: FakeSlack, user: str, owner: str) -> tuple[str, str]:
    """/enroll → modal → submission whose clip is a file `owner` uploaded; returns (the DM `user` gets, the file)."""
    assert (await bot.command(user)).status == 200
    opened = lambda: [c for c in fake.calls_to("views.open") if c.params.get("trigger_id") == f"trig-{user}"]
    view = (await fake.wait_for(opened, what="views.open"))[-1].params["view"]
    f = fake.add_file("voice.wav", "audio/wav", CLIP, user=owner)
    values = {"clip": {"clip": {"type": "file_input", "files": [fake.file_object(f)]}},
              "consent": {"consent": {"type": "checkboxes", "selected_options": [{"value": "yes"}]}}}
    before = len(dms(fake, user))
    answer = await bot.submit_view(user, view, values)
    assert answer.status == 200
    return (await fake.wait_for(lambda: dms(fake, user)[before:], what=f"DM to {user}"))[0], f.id


async def test_a_clip_someone_else_uploaded_makes_no_voiceprint(db: Database):
    fake = FakeSlack()
    await fake.start()
    engine = FakeEngine()
    bot = await BotUnderTest(fake, bot_settings(fake, db.url.render_as_string(hide_password=False)), db,
                             engine, cpu=shared_cpu()).start()
    try:
        refused, _ = await submit_with_file(bot, fake, ATTACKER, owner=VICTIM)
        downloads_after_refusal = list(fake.downloads)
        uploads_after_refusal = len(engine.media)
        own, own_file = await submit_with_file(bot, fake, VICTIM, owner=VICTIM)
    finally:
        await bot.stop()
        await fake.close()
    assert refused.startswith(":warning: Your voice was not enrolled: the clip must be a file you uploaded"), refused
    assert downloads_after_refusal == [], "the victim's file was fetched before the owner check"
    assert uploads_after_refusal == 0
    assert await get_voiceprint(db, TEAM_ID, ATTACKER) is None
    assert own.startswith(":white_check_mark: Your voiceprint is saved"), own
    assert own_file in fake.downloads  # the check sees downloads: the accepted clip was fetched
    assert await get_voiceprint(db, TEAM_ID, VICTIM) is not None
