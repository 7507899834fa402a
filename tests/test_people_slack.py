"""Data-protection requests in Slack, through the real endpoint with signed requests and the fake Slack Web API:
a workspace admin deletes someone else's data with `/enroll delete @person` (their voiceprint, the enrollment
they had started, their name in stored results and in the summaries already posted, charts redrawn; an audit
row; a DM to the person); anyone else is refused and nothing changes, with admin rights asked of Slack at each
command; `/enroll delete` does the same for oneself; `/enroll help` shows the retention schedule."""
from __future__ import annotations

import itertools

import pytest
import pytest_asyncio

from bot.services.people import ADMIN_ONLY
from bot.slack.enroll import NAME_SOMEONE
from bot.slack_api.client import client_for
from bot.summary import enroll_views as views
from storage.retention import holds
from testbed.fake_slack import TEAM_ID
from tests import people_support as support
from tests.slack_e2e_support import dms, slack_world, submit_enrollment

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHANNEL, UPLOADER = support.CHANNEL, support.UPLOADER
ADMIN, OWNER, BYSTANDER = "UADMIN", "UOWNER", "UBYSTANDER"
_ids = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(local_engine, tmp_path_factory):
    # No job runner: a submitted enrollment stays queued (for the delete to drop), and nothing races the test.
    async with slack_world(local_engine, tmp_path_factory.mktemp("people-slack"), run_jobs=False) as w:
        fake = w[0]
        fake.members[CHANNEL] = [ADMIN, OWNER, BYSTANDER, UPLOADER, "UBOT"]
        fake.admins.add(ADMIN)
        fake.owners.add(OWNER)
        yield w


def person() -> str:
    return f"UPERSON{next(_ids)}"


async def enrolled(world, user: str) -> None:
    await support.enrolled(world[1], user, engine=world[2].services.engine.engine_id)


async def posted(world, matched: str, claimed_by: str | None = None) -> tuple[int, str]:
    _fake, db, bot = world
    return await support.posted(db, await client_for(bot.services, TEAM_ID), matched, claimed_by)


async def command(world, user: str, text: str) -> str:
    """`/enroll TEXT` whose answer comes through the response_url (after an empty ack)."""
    fake, _db, bot = world
    n = len(fake.responses)
    resp = await bot.command(user, text)
    assert resp.status == 200
    return (await fake.wait_for(lambda: fake.responses[n:], timeout=120, what=f"answer to /enroll {text}"))[0]["text"]


def summary(fake, ts: str) -> str:
    return str(fake.messages[(CHANNEL, ts)].blocks)


async def stored(db, rec_id: int):
    from storage.recordings import get_recording

    return await get_recording(db, rec_id)


async def stored_chart(db, rec_id: int):
    from storage.thread import CHART, get_output

    return await get_output(db, rec_id, CHART)


async def test_a_workspace_admin_deletes_someone_elses_data_everywhere_and_they_are_told(world):
    from sqlmodel import select

    from storage.models import AuditEvent, EnrollmentJob
    from storage.voiceprints import get_voiceprint

    fake, db, bot = world
    gone = person()
    await enrolled(world, gone)
    matched_id, matched_ts = await posted(world, gone)
    claimed_id, claimed_ts = await posted(world, BYSTANDER, claimed_by=gone)
    old_chart = (await stored_chart(db, matched_id)).file_id
    # An enrollment they submitted through the modal, still queued; it stored the consent text they ticked.
    body = await submit_enrollment(bot, fake, gone, b"RIFF", replace=True)
    assert body.get("response_action") == "update", body
    async with db.session() as s:
        [job] = (await s.exec(select(EnrollmentJob).where(EnrollmentJob.user_id == gone))).all()
    assert job.consent_text == views.consent_statement(bot.settings.engine)
    assert f"<@{gone}>" in summary(fake, matched_ts) and f"<@{gone}>" in summary(fake, claimed_ts)

    text = await command(world, ADMIN, f"delete <@{gone}|person>")

    assert f"Done for <@{gone}>" in text and "voiceprint is deleted" in text and "enrollment" in text, text
    assert "2 meeting results" in text and "2 summaries updated in Slack" in text and "told by direct message" in text
    assert await get_voiceprint(db, TEAM_ID, gone) is None
    async with db.session() as s:
        assert (await s.exec(select(EnrollmentJob).where(EnrollmentJob.user_id == gone))).all() == []
    for rec_id, ts in ((matched_id, matched_ts), (claimed_id, claimed_ts)):
        rec = await stored(db, rec_id)
        assert not holds(rec.result, gone) and not holds(rec.relabels, gone)
        assert gone not in summary(fake, ts), "the posted summary is edited in place"
        assert (await stored_chart(db, rec_id)).seq == rec.relabel_seq, "the chart is redrawn without them"
    assert "Unknown speaker" in summary(fake, matched_ts) and f"<@{BYSTANDER}>" in summary(fake, claimed_ts)
    assert old_chart not in fake.files and (await stored_chart(db, matched_id)).file_id != old_chart
    [told] = dms(fake, gone)
    assert f"<@{ADMIN}>" in told and "deleted the data Voice ID kept about you" in told and "/enroll" in told
    assert "your voiceprint" in told and "your name in 2 meeting results" in told, told
    async with db.session() as s:
        [row] = (await s.exec(select(AuditEvent).where(AuditEvent.action == "erase",
                                                       AuditEvent.target_id == gone))).all()
    assert row.actor_id == ADMIN and row.detail["via"] == "slack admin" and row.detail["results_redacted"] == 2
    assert row.detail["voiceprints"] == 1 and row.detail["enrollments_cancelled"] == 1


async def test_anyone_but_a_workspace_admin_or_owner_is_refused_and_nothing_changes(world):
    from storage.voiceprints import get_voiceprint

    fake, db, _bot = world
    kept = person()
    await enrolled(world, kept)
    rec_id, ts = await posted(world, kept)
    before = summary(fake, ts)

    text = await command(world, BYSTANDER, f"delete <@{kept}>")

    assert text == ADMIN_ONLY
    assert [c.params["user"] for c in fake.calls_to("users.info")][-1] == BYSTANDER, "asked of Slack"
    assert await get_voiceprint(db, TEAM_ID, kept) is not None
    assert summary(fake, ts) == before and holds((await stored(db, rec_id)).result, kept)
    assert dms(fake, kept) == []
    # The counterpart: a workspace owner may.
    assert f"Done for <@{kept}>" in await command(world, OWNER, f"delete <@{kept}>")
    assert await get_voiceprint(db, TEAM_ID, kept) is None and kept not in summary(fake, ts)


async def test_admin_rights_are_asked_of_slack_at_every_command_never_remembered(world):
    from storage.voiceprints import get_voiceprint

    fake, db, _bot = world
    acting, first, second = person(), person(), person()
    for user in (first, second):
        await enrolled(world, user)
    fake.admins.add(acting)
    assert f"Done for <@{first}>" in await command(world, acting, f"delete <@{first}>")
    fake.admins.discard(acting)  # no longer an admin in Slack
    assert await command(world, acting, f"delete <@{second}>") == ADMIN_ONLY
    assert await get_voiceprint(db, TEAM_ID, second) is not None


async def test_enroll_delete_takes_ones_own_name_out_of_stored_results_too(world):
    from storage.voiceprints import get_voiceprint

    fake, db, bot = world
    me = person()
    await enrolled(world, me)
    rec_id, ts = await posted(world, me)
    n = len(fake.responses)

    ack = await (await bot.command(me, "delete")).text()

    assert "Your voiceprint is deleted" in ack, ack
    [more] = await fake.wait_for(lambda: fake.responses[n:], what="the follow-up")
    assert "Your name is also taken out of 1 meeting result" in more["text"], more
    assert await get_voiceprint(db, TEAM_ID, me) is None and not holds((await stored(db, rec_id)).result, me)
    assert me not in summary(fake, ts)
    assert dms(fake, me) == [], "they asked themselves: the answer is enough"


async def test_a_name_slack_did_not_resolve_changes_nothing(world):
    from storage.voiceprints import get_voiceprint

    kept = person()
    await enrolled(world, kept)
    assert await command(world, ADMIN, "delete @jane") == NAME_SOMEONE
    assert await get_voiceprint(world[1], TEAM_ID, kept) is not None


async def test_help_shows_the_retention_schedule(world):
    from bot.jobs.scheduler import PURGE_EVERY_SECONDS

    _fake, _db, bot = world
    text = await (await bot.command(BYSTANDER, "help")).text()
    s = bot.settings
    assert f"meeting results (who spoke when, transcripts, claims) {s.result_retention_days} days" in text, text
    assert f"the audit log (who enrolled, deleted or corrected what, and when) {s.audit_retention_days} days" in text
    assert "purged every hour" in text and PURGE_EVERY_SECONDS == 3600
    assert "`/enroll delete @person`" in text and "admins and owners only" in text
