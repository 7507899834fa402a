"""The App Home ("my voice, my log") through the real endpoint with signed requests and the fake Slack Web API:
opening it publishes the person's own view (their voiceprint with the consent they gave, the recordings whose
stored result names them with "Not me", the retention schedule `/enroll help` shows) to them alone; its "Not
me" is the summary's correction (summary edited in place, Home published again), also after they left the
channel, and refused without naming anyone for a recording that does not name them; its delete button sits
behind a confirmation and erases as `/enroll delete` does; the view stays within Slack's 100 blocks."""
from __future__ import annotations

import itertools
import json

import pytest
import pytest_asyncio

from bot.services.claims import NOT_ME_DONE, NOT_NAMED_YOU
from bot.slack_api.client import client_for
from bot.summary import enroll_views as views
from bot.summary.blocks import button_value
from bot.summary.home import HOME_DELETE, HOME_NOT_ME, NOT_ENROLLED
from storage.retention import holds
from testbed.fake_slack import TEAM_ID
from tests import people_support as support
from tests.slack_e2e_support import slack_world

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHANNEL = support.CHANNEL
BYSTANDER = "UBYSTANDER"
_ids = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(local_engine, tmp_path_factory):
    # No job runner and no speech: the recordings are stored as a finished job leaves them.
    async with slack_world(local_engine, tmp_path_factory.mktemp("home"), run_jobs=False) as w:
        w[0].members[CHANNEL] = [BYSTANDER, support.UPLOADER, "UBOT"]
        yield w


def person(world, *, member: bool = True) -> str:
    """A new person, a member of the recording's channel unless told."""
    user = f"UHOME{next(_ids)}"
    if member:
        world[0].members[CHANNEL].append(user)
    return user


async def enrolled(world, user: str, consent_text: str | None = None) -> None:
    await support.enrolled(world[1], user, engine=world[2].services.engine.engine_id, consent_text=consent_text)


async def posted(world, matched: str, claimed_by: str | None = None) -> tuple[int, str]:
    _fake, db, bot = world
    return await support.posted(db, await client_for(bot.services, TEAM_ID), matched, claimed_by)


async def open_home(world, user: str, *, after=None) -> dict:
    """Opens the person's Home tab; returns the view published to them (a new one when `after` is given)."""
    fake, _db, bot = world
    before = after if after is not None else fake.homes.get(user)
    assert (await bot.home_opened(user)).status == 200
    return await fake.wait_for(lambda: fake.homes.get(user) is not before and fake.homes.get(user),
                               what=f"the Home of {user}")


async def press_home(world, user: str, action: str, value: str) -> dict:
    """Presses a Home button; returns the Home published to them after it."""
    fake, _db, bot = world
    before = fake.homes.get(user)
    assert (await bot.press_home(user, action, value)).status == 200
    return await fake.wait_for(lambda: fake.homes.get(user) is not before and fake.homes.get(user),
                               timeout=60, what=f"the Home of {user} after {action}")


def buttons(view: dict, action: str) -> list[dict]:
    found = [b["accessory"] for b in view["blocks"] if (b.get("accessory") or {}).get("action_id") == action]
    return found + [e for b in view["blocks"] for e in b.get("elements") or [] if e.get("action_id") == action]


def shown(view: dict) -> str:
    """Every text the view shows, one per line."""
    out = []
    for b in view["blocks"]:
        out += [b["text"]["text"]] if "text" in b else []
        out += [e["text"] for e in b.get("elements") or [] if isinstance(e.get("text"), str)]
    return "\n".join(out)


def summary(fake, ts: str) -> str:
    return str(fake.messages[(CHANNEL, ts)].blocks)


async def stored(db, rec_id: int):
    from storage.recordings import get_recording

    return await get_recording(db, rec_id)


async def test_home_shows_their_enrollment_their_recordings_and_the_retention_schedule_to_them_alone(world):
    fake, _db, bot = world
    me, other = person(world), person(world)
    await enrolled(world, me, consent_text="I agree <!channel> *now* <https://evil.example|click>")
    await enrolled(world, other)
    mine = [await posted(world, me) for _ in range(2)]
    theirs, _ = await posted(world, other)
    await posted(world, other, claimed_by=me)  # other named there; I claimed the unknown speaker
    n = len(fake.calls_to("views.publish"))

    view = await open_home(world, me)

    published = fake.calls_to("views.publish")[n:]
    assert [c.params["user_id"] for c in published] == [me], "published to the person who opened it, only"
    text = json.dumps(view)
    assert other not in text and str(theirs) not in [v["value"].split(":")[0] for v in buttons(view, HOME_NOT_ME)]
    assert [b["value"] for b in buttons(view, HOME_NOT_ME)] == [button_value(rec_id, "SPEAKER_00")
                                                                for rec_id, _ in reversed(mine)]
    assert "3 meeting results Voice ID keeps name you" in text, "two matches and one claim"
    assert "<#C0001>" in text and "91% match" in text and "This is me" in text
    # The consent text they agreed to, as stored, inert.
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text and "<https://evil" not in text
    assert "local engine" in text and "Enrolled " in text and "standup.wav" not in text, "no meeting title shown"
    s = bot.settings
    assert views.retention_text(s.result_retention_days, s.audit_retention_days) in text, "the schedule of /enroll help"
    assert views.explanation(s.result_retention_days, s.engine) in shown(view), "the notice the enrollment modal gives"
    [delete] = buttons(view, HOME_DELETE)
    assert delete["confirm"]["confirm"]["text"] == "Delete" and delete["style"] == "danger", "behind a confirmation"
    # Someone who never enrolled and is named nowhere is told so.
    empty = await open_home(world, person(world))
    assert NOT_ENROLLED in json.dumps(empty) and "No meeting result Voice ID keeps names you" in json.dumps(empty)
    assert buttons(empty, HOME_DELETE) == [] and buttons(empty, HOME_NOT_ME) == []


async def test_not_me_in_home_corrects_the_summary_in_place_even_after_they_left_the_channel(world):
    from sqlmodel import select

    from storage.models import AuditEvent

    fake, db, _bot = world
    me = person(world, member=False)  # named when they were in the channel; not a member any more
    await enrolled(world, me)
    rec_id, ts = await posted(world, me)
    view = await open_home(world, me)
    [button] = buttons(view, HOME_NOT_ME)
    assert f"<@{me}>" in summary(fake, ts)

    after = await press_home(world, me, HOME_NOT_ME, button["value"])

    assert NOT_ME_DONE in json.dumps(after) and "you said *Not me*" in json.dumps(after)
    assert buttons(after, HOME_NOT_ME) == [], "nothing left to press"
    assert (await stored(db, rec_id)).relabels == {"SPEAKER_00": None}
    assert f"<@{me}>" not in summary(fake, ts) and "Unknown speaker" in summary(fake, ts), "edited in place"
    async with db.session() as s:
        [row] = (await s.exec(select(AuditEvent).where(AuditEvent.action == "unclaim",
                                                       AuditEvent.target_id == str(rec_id)))).all()
    assert row.actor_id == me


async def test_not_me_in_home_for_a_recording_that_does_not_name_them_is_refused_without_naming_anyone(world):
    """The button's value is the presser's to forge, and Home asks no channel membership: the refusal must
    not say who the voiceprint named (the summary's refusal does: "Only @someone can…")."""
    fake, db, _bot = world
    me, named = person(world, member=False), person(world)
    await enrolled(world, named)
    rec_id, ts = await posted(world, named)
    before = summary(fake, ts)

    after = await press_home(world, me, HOME_NOT_ME, button_value(rec_id, "SPEAKER_00"))

    assert NOT_NAMED_YOU in json.dumps(after)
    assert named not in json.dumps(after), "the answer tells nobody who was named"
    assert (await stored(db, rec_id)).relabels is None and summary(fake, ts) == before


async def test_delete_in_home_erases_as_enroll_delete_does(world):
    from sqlmodel import select

    from storage.models import AuditEvent
    from storage.voiceprints import get_voiceprint

    fake, db, _bot = world
    me = person(world)
    await enrolled(world, me)
    rec_id, ts = await posted(world, me)
    await open_home(world, me)

    after = await press_home(world, me, HOME_DELETE, "me")

    text = json.dumps(after)
    assert "Your voiceprint is deleted" in text and "Your name is also taken out of 1 meeting result" in text, text
    assert NOT_ENROLLED in text and "No meeting result Voice ID keeps names you" in text
    assert await get_voiceprint(db, TEAM_ID, me) is None and not holds((await stored(db, rec_id)).result, me)
    assert me not in summary(fake, ts)
    async with db.session() as s:
        [row] = (await s.exec(select(AuditEvent).where(AuditEvent.action == "erase",
                                                       AuditEvent.target_id == me))).all()
    assert row.actor_id == me and row.detail["via"] == "home" and row.detail["voiceprints"] == 1


async def test_home_lists_the_latest_twenty_within_slacks_block_limit(world):
    _fake, _db, _bot = world
    me = person(world)
    await enrolled(world, me)
    ids = [(await posted(world, me))[0] for _ in range(23)]

    view = await open_home(world, me)

    assert len(view["blocks"]) <= 100
    assert "23 meeting results Voice ID keeps name you; the latest 20 are listed" in json.dumps(view)
    assert [b["value"] for b in buttons(view, HOME_NOT_ME)] == [button_value(i, "SPEAKER_00")
                                                                for i in reversed(ids[-20:])], "newest first"


@pytest.mark.parametrize("manifest", ["manifest.yml", "manifest.socket-mode.yml"])
async def test_both_manifests_enable_the_home_tab_and_subscribe_to_its_event(manifest):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / manifest).read_text()
    assert "\n    home_tab_enabled: true" in text
    events = text.split("bot_events:")[1].split("interactivity:")[0]
    assert "\n      - app_home_opened\n" in events


async def test_the_view_is_cut_to_slacks_100_blocks_saying_so():
    from types import SimpleNamespace

    from bot.summary.home import MAX_HOME_BLOCKS, home_view

    claims = [{"speaker": f"SPEAKER_{i:02d}", "talk_time_seconds": 3.0} for i in range(6)]
    entry = {"recording_id": 1, "channel_id": "C0001", "shared_at": "2025-01-02T10:00:00+00:00",
             "result_deleted_after": "2025-02-01T10:00:00+00:00", "identified_by_voiceprint": [],
             "claimed_with_this_is_me": claims}
    log = SimpleNamespace(voiceprints=[], enrolling=[], recordings=[entry] * 20, named_in=20)
    view = home_view(log, active_engine="local", notice_text="notice", kept="kept", answer="done")
    assert len(view["blocks"]) == MAX_HOME_BLOCKS
    assert "More are not shown here" in shown(view) and shown(view).endswith("`/enroll help` lists the commands.")
