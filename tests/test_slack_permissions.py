"""Who may do what, through the real endpoint: enrolling needs the consent box ticked; "Not me" belongs to the
person a speaker is named as; "This is me" cannot take a speaker that already has a name; every button on a
summary acts only for members of the recording's channel, as Slack lists them at the press.

Each refusal has its allowed counterpart next to it, so a test cannot pass because nothing works at all.
"""
from __future__ import annotations

import itertools

import pytest
import pytest_asyncio

from bot.schema import (
    DiarizationSegment,
    IdentificationSegment,
    IdentifyOutput,
    SpeakerMatch,
)
from bot.slack_api.client import client_for
from testbed.fake_slack import TEAM_ID
from tests.slack_e2e_support import (
    dms,
    enroll,
    enrollment_clip,
    press,
    press_identify_again,
    slack_world,
    speaker_of,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHANNEL = "C0001"
NAMED, BYSTANDER, UPLOADER, OUTSIDER = "UNAMED", "UOTHER", "UUPLOADER", "UOUTSIDER"
MEMBERS = [NAMED, BYSTANDER, UPLOADER, "UBOT"]  # OUTSIDER is in the workspace, not in the channel
_files = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(local_engine, tmp_path_factory):
    # No job runner: the button tests claim and complete their recordings themselves, and a runner would race them.
    async with slack_world(local_engine, tmp_path_factory.mktemp("slack-permissions"), run_jobs=False) as w:
        w[0].members[CHANNEL] = list(MEMBERS)
        yield w


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def enrolling_world(local_engine, tmp_path_factory):
    """With the job runner, which runs enrollments."""
    async with slack_world(local_engine, tmp_path_factory.mktemp("slack-permissions-enroll")) as w:
        yield w


def two_speakers() -> dict:
    """SPEAKER_00 matched to NAMED by voiceprint, SPEAKER_01 unknown."""
    turns = [("SPEAKER_00", 0.0, 6.0), ("SPEAKER_01", 6.0, 10.0), ("SPEAKER_00", 10.0, 14.0)]
    match = {"SPEAKER_00": NAMED, "SPEAKER_01": None}
    return IdentifyOutput(
        diarization=[DiarizationSegment(speaker=s, start=a, end=b) for s, a, b in turns],
        identification=[IdentificationSegment(speaker=match[s] or s, start=a, end=b, diarization_speaker=s,
                                              match=match[s]) for s, a, b in turns],
        voiceprints=[SpeakerMatch(speaker="SPEAKER_00", match=NAMED, confidence={NAMED: 91.0}),
                     SpeakerMatch(speaker="SPEAKER_01", match=None, confidence={NAMED: 12.0})],
        duration=14.0).wire()


async def posted_summary(world) -> str:
    """A finished recording of `two_speakers()` whose summary is in the channel (NAMED enrolled, so it offers
    "Identify again"); returns the summary's ts."""
    from bot.summary.blocks import render_summary
    from bot.summary.stats import summary_of
    from storage.recordings import claim_next, complete, enqueue_recording, get_recording, mark_posted

    _fake, db, bot = world
    from storage.models import utcnow
    from storage.voiceprints import upsert_voiceprint

    await upsert_voiceprint(db, team_id=TEAM_ID, user_id=NAMED, engine=bot.services.engine.engine_id, model_id="m",
                            voiceprint="vp", consent_at=utcnow(), clip_duration=5.0)
    rec, _ = await enqueue_recording(db, team_id=TEAM_ID, channel_id=CHANNEL, file_id=f"FPERM{next(_files)}",
                                     file_name="standup.wav", uploader_id=UPLOADER, message_ts="1700000000.000100", engine="local")
    assert (await claim_next(db, "test", 60)).id == rec.id
    assert await complete(db, rec.id, "test", two_speakers(), 14.0)
    rec = await get_recording(db, rec.id)
    msg = render_summary(summary_of(rec), file_name=rec.file_name, recording_id=rec.id)
    client = await client_for(bot.services, TEAM_ID)
    posted = await client.chat_postMessage(channel=CHANNEL, thread_ts=rec.message_ts, text=msg.text,
                                           blocks=msg.blocks)
    assert await mark_posted(db, rec.id, "test", posted["ts"])
    return posted["ts"]


def summary_text(fake, ts: str) -> str:
    return str(fake.messages[(CHANNEL, ts)].blocks)


@pytest.mark.speech
async def test_enrolling_without_consent_is_refused_and_stores_nothing(enrolling_world):
    from storage.voiceprints import get_voiceprint

    fake, db, bot = enrolling_world
    clip = enrollment_clip([("1998", 0)])
    refused = await enroll(bot, fake, "U1998", clip, consent=False)
    assert refused.startswith("errors:") and "consent" in refused, refused
    await bot.services.drain()  # nothing a listener started is still running
    assert await get_voiceprint(db, TEAM_ID, "U1998") is None
    assert dms(fake, "U1998") == []
    # The same clip with the box ticked is enrolled: it was the missing consent that was refused.
    saved = await enroll(bot, fake, "U1998", clip)
    assert "voiceprint is saved" in saved, saved
    assert (await get_voiceprint(db, TEAM_ID, "U1998")).consent_at is not None


async def test_not_me_is_refused_for_anyone_but_the_named_person(world):
    fake, _db, bot = world
    ts = await posted_summary(world)
    value = speaker_of(fake.messages[(CHANNEL, ts)].blocks, f"<@{NAMED}>")
    before = summary_text(fake, ts)

    refused = await press(bot, fake, BYSTANDER, "not_me", value, ts)
    assert f"<@{NAMED}>" in refused["text"]
    assert summary_text(fake, ts) == before and f"<@{NAMED}>" in before

    done = await press(bot, fake, NAMED, "not_me", value, ts)
    assert "unknown" in done["text"] and f"<@{NAMED}>" not in summary_text(fake, ts)


async def test_this_is_me_is_refused_on_a_speaker_that_already_has_a_name(world):
    fake, _db, bot = world
    ts = await posted_summary(world)
    blocks = fake.messages[(CHANNEL, ts)].blocks
    named, unknown = speaker_of(blocks, f"<@{NAMED}>"), speaker_of(blocks, "Unknown speaker")
    before = summary_text(fake, ts)

    refused = await press(bot, fake, BYSTANDER, "this_is_me", named, ts)
    assert "already named" in refused["text"] and f"<@{NAMED}>" in refused["text"]
    assert summary_text(fake, ts) == before and f"<@{BYSTANDER}>" not in before

    await press(bot, fake, BYSTANDER, "this_is_me", unknown, ts)
    after = summary_text(fake, ts)
    assert f"<@{BYSTANDER}>" in after and f"<@{NAMED}>" in after


async def private_answer(bot, fake, user: str, action: str, value: str, ts: str) -> str:
    """Press a button; the private answer the presser gets: ephemeral in the channel, or a DM where Slack will not
    show an ephemeral message (to someone not in the channel). "Identify again" asks for the number of speakers in
    a modal first: it is submitted empty."""
    if action == "identify_again":
        return (await press_identify_again(bot, fake, user, value, ts, channel=CHANNEL))["text"]

    def answers() -> list[str]:
        return [c.params["text"] for c in fake.calls if c.done and (
            (c.method == "chat.postEphemeral" and c.params["user"] == user)
            or (c.method == "chat.postMessage" and c.params.get("channel") == user))]

    n = len(answers())
    assert (await bot.press(user, action, value, channel=CHANNEL, message_ts=ts)).status == 200
    [text] = await fake.wait_for(lambda: answers()[n:], what=f"the answer to {user}")
    return text


async def test_every_button_on_a_summary_acts_only_for_members_of_the_channel(world):
    from sqlmodel import select

    from bot.summary.blocks import IDENTIFY_AGAIN, NOT_ME, THIS_IS_ME, UNDO_CLAIM
    from storage.models import AuditEvent
    from storage.recordings import get_recording

    fake, db, bot = world
    ts = await posted_summary(world)
    blocks = fake.messages[(CHANNEL, ts)].blocks
    named, unknown = speaker_of(blocks, f"<@{NAMED}>"), speaker_of(blocks, "Unknown speaker")
    rec_id = int(unknown.split(":")[0])
    again = next(el["value"] for b in blocks for el in b.get("elements") or [] if el.get("action_id") == IDENTIFY_AGAIN)

    async def refused(user: str, action: str, value: str) -> None:
        rec, summary = await get_recording(db, rec_id), summary_text(fake, ts)
        async with db.session() as s:
            audited = len((await s.exec(select(AuditEvent))).all())
        answer = await private_answer(bot, fake, user, action, value, ts)
        assert "Only members of this channel" in answer and f"<#{CHANNEL}>" in answer and "nothing" in answer
        after = await get_recording(db, rec_id)
        assert summary_text(fake, ts) == summary
        assert (after.relabels, after.status, after.attempts, after.relabel_seq) == (
            rec.relabels, rec.status, rec.attempts, rec.relabel_seq)
        async with db.session() as s:
            assert len((await s.exec(select(AuditEvent))).all()) == audited

    # Someone in the workspace but not in the channel (a public channel can be read without joining it).
    await refused(OUTSIDER, THIS_IS_ME, unknown)
    await refused(OUTSIDER, IDENTIFY_AGAIN, again)
    assert "claimed by you" in await private_answer(bot, fake, BYSTANDER, THIS_IS_ME, unknown, ts)

    # People who left the channel since: the person named, the claimant and the uploader.
    fake.members[CHANNEL] = ["UBOT"]
    try:
        await refused(NAMED, NOT_ME, named)
        await refused(BYSTANDER, UNDO_CLAIM, unknown)
        await refused(UPLOADER, UNDO_CLAIM, unknown)
        await refused(NAMED, IDENTIFY_AGAIN, again)
    finally:
        fake.members[CHANNEL] = list(MEMBERS)
    # Back in the channel, the same presses work.
    assert "undone" in await private_answer(bot, fake, UPLOADER, UNDO_CLAIM, unknown, ts)
    assert "unknown" in await private_answer(bot, fake, NAMED, NOT_ME, named, ts)
    assert f"<@{BYSTANDER}>" not in summary_text(fake, ts) and f"<@{NAMED}>" not in summary_text(fake, ts)
