"""The Slack bot end to end: signed requests to the real aiohttp endpoint, the fake Slack Web API, a real
SQLite database, the real local engine and real speech. The tests share one workspace and what its fixtures make
once (the readers' voiceprints, the meeting's summary); each also runs alone. The crash and the worker process
have workspaces of their own, since they need the workspace's job runner gone."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from testbed.fake_slack import BotUnderTest, FakeSlack
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import (
    SR,
    concat,
    enroll,
    enroll_readers,
    enrollment_clip,
    meeting,
    press,
    recording_for,
    slack_world,
    speaker_of,
    utterance,
    wait_status,
    wav_bytes,
)

CHANNEL = "C0001"
READERS = {"U1688": "1688", "U1998": "1998", "U2033": "2033"}  # enrolled
UNKNOWN = "U2414"  # in the channel, never enrolled

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.speech,
]


ENROLL_CLIPS = {"U1688": [("1688", 0)], "U1998": [("1998", 0)], "U2033": [("2033", 0), ("2033", 1)]}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(local_engine, tmp_path_factory):
    """One workspace: fake Slack, a migrated SQLite file and the bot serving on a real socket."""
    async with slack_world(local_engine, tmp_path_factory.mktemp("slack-e2e")) as (fake, db, bot):
        fake.members[CHANNEL] = [*READERS, UNKNOWN, "UBOT"]
        fake.users.update({"U1688": "Ann", "U1998": "Bea", "U2033": "Cid", UNKNOWN: "Dan"})
        yield fake, db, bot


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def enrolled(world) -> dict[str, str]:
    """The three readers enrolled through the modal: the DM each got."""
    fake, _, bot = world
    return {user: await enroll(bot, fake, user, enrollment_clip(parts)) for user, parts in ENROLL_CLIPS.items()}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def meeting_posted(world, enrolled):
    """The meeting shared in the channel once its readers enrolled, and its job ended: (file, event, row)."""
    fake, db, bot = world
    f = fake.add_file("standup.wav", "audio/wav", wav_bytes(meeting()))
    event = bot.share_event(f)
    assert (await bot.event(event, event_id="EvMeeting")).status == 200
    return f, event, await wait_status(fake, db, f.id, {"posted", "failed"})


async def failure_shown(fake: FakeSlack, ts: str, text: str):
    """The thread's one message once it shows `text`: a failed state is stored before its reply is edited."""
    return await fake.one_reply(CHANNEL, ts, shows=text)


# -- enrollment -------------------------------------------------------------------------------------

async def test_enroll_three_readers(world, enrolled):
    _, db, bot = world
    for reply in enrolled.values():
        assert "voiceprint is saved" in reply, reply
    from storage.voiceprints import get_voiceprint

    for user in ENROLL_CLIPS:
        assert await get_voiceprint(db, "T0001", user) is not None
    resp = await bot.command("U1688", "status")
    assert "You are enrolled since" in await resp.text()


async def test_re_enrolling_asks_for_confirmation_then_replaces(world, enrolled):
    fake, db, bot = world
    from storage.voiceprints import get_voiceprint

    before = await get_voiceprint(db, "T0001", "U1998")
    clip = enrollment_clip([("1998", 0), ("1998", 1)])
    refused = await enroll(bot, fake, "U1998", clip)
    assert refused.startswith("errors:") and "replace" in refused
    opened = fake.calls_to("views.open")[-1].params["view"]
    assert any(b.get("block_id") == "replace" for b in opened["blocks"])
    replaced = await enroll(bot, fake, "U1998", clip, replace=True)
    assert "voiceprint is replaced" in replaced, replaced
    after = await get_voiceprint(db, "T0001", "U1998")
    assert after.voiceprint != before.voiceprint or after.updated_at > before.updated_at


async def test_enroll_bad_inputs_have_clear_messages(world):
    fake, db, bot = world
    pdf = await enroll(bot, fake, "UBAD", b"%PDF-1.4 not audio", name="notes.pdf", mimetype="application/pdf")
    assert pdf.startswith("errors:") and "not audio or video" in pdf
    long_clip = await enroll(bot, fake, "UBAD", wav_bytes(concat([("1688", i) for i in range(1, 8)])))
    assert "not enrolled" in long_clip and "44 s long" in long_clip and "at most 30 s" in long_clip, long_clip
    two = await enroll(bot, fake, "UBAD", wav_bytes(concat([("1688", 2), ("2609", 0), ("1688", 3), ("2609", 1)],
                                                           pause=0.5)))
    assert "not enrolled" in two and ("voice" in two.lower() or "speaker" in two.lower()), two
    html = await enroll(bot, fake, "UBAD", wav_bytes(utterance("1688", 0)), serve_html=True)
    assert "not enrolled" in html and "web page" in html, html
    from storage.voiceprints import get_voiceprint

    assert await get_voiceprint(db, "T0001", "UBAD") is None


# -- recordings -------------------------------------------------------------------------------------

async def test_meeting_summary_names_three_and_uploads_chart(world, meeting_posted):
    from storage.thread import CHART, get_output

    fake, db, _ = world
    _, event, rec = meeting_posted
    assert rec.state.value == "posted", rec.error_message
    reply = await fake.one_reply(CHANNEL, event["ts"])
    text = str(reply.blocks)
    for user in READERS:
        assert f"<@{user}>" in text
    assert "Unknown speaker 1" in text and f"<@{UNKNOWN}>" not in text
    assert "talk time" in text and "This is me" in text and "Not me" in text
    assert reply.text.startswith("Speakers in standup.wav")
    assert any("Identifying speakers in standup.wav" in h[0] for h in reply.history)
    [upload] = fake.calls_to("files.completeUploadExternal")
    assert upload.params["thread_ts"] == event["ts"] and upload.params["channel_id"] == CHANNEL
    png = fake.files[(await get_output(db, rec.id, CHART)).file_id].data
    assert png.startswith(b"\x89PNG") and len(png) > 5000


async def test_same_event_three_times_makes_one_job_and_one_reply(world):
    fake, db, bot = world
    f = fake.add_file("retro.txt", "text/plain", b"not a recording")
    ignored = bot.share_event(f)
    await bot.event(ignored, event_id="EvText")
    g = fake.add_file("silence.wav", "audio/wav", wav_bytes(np.zeros(5 * SR, np.float32)))
    event = bot.share_event(g)
    fake.rate_limit["chat.postMessage"] = 1  # the first reply attempt gets a 429 with Retry-After
    responses = await asyncio.gather(*(bot.event(event, event_id="EvDup", retry=n or None) for n in range(3)))
    assert [r.status for r in responses] == [200, 200, 200]
    rec = await wait_status(fake, db, g.id, {"failed", "posted"})
    assert rec.state.value == "failed" and rec.error_code == "silent"
    reply = await failure_shown(fake, event["ts"], "Could not identify speakers in silence.wav")
    assert "silent" in reply.text
    assert fake.thread(CHANNEL, ignored["ts"]) == []
    assert await recording_for(db, f.id) is None


async def test_corrupt_recording_gets_clear_message(world):
    fake, db, bot = world
    f = fake.add_file("broken.m4a", "audio/mp4", b"\x00\x00\x00\x18ftypM4A " + bytes(range(256)) * 40)
    event = bot.share_event(f)
    await bot.event(event, event_id="EvCorrupt")
    rec = await wait_status(fake, db, f.id, {"failed", "posted"})
    assert rec.state.value == "failed"
    await failure_shown(fake, event["ts"], "Could not identify speakers in broken.m4a")
    assert rec.error_code in ("corrupt", "not_audio", "no_audio_track", "empty"), rec.error_code


async def test_html_page_instead_of_the_recording(world):
    fake, db, bot = world
    f = fake.add_file("review.m4a", "audio/mp4", b"irrelevant", serve_html=True)
    event = bot.share_event(f)
    await bot.event(event, event_id="EvHtml")
    rec = await wait_status(fake, db, f.id, {"failed", "posted"})
    assert rec.state.value == "failed" and rec.error_code == "html_page"
    reply = await failure_shown(fake, event["ts"], "web page instead of review.m4a")
    assert "reinstall" in str(reply.blocks)


# -- feedback ---------------------------------------------------------------------------------------

async def test_this_is_me_and_not_me(world, meeting_posted):
    fake, db, bot = world
    from storage.recordings import get_recording

    _, event, rec = meeting_posted
    rec_id, reply = rec.id, await fake.one_reply(CHANNEL, event["ts"])
    msg_ts = reply.ts
    summary = lambda: str(fake.messages[(CHANNEL, msg_ts)].blocks)
    value = speaker_of(fake.messages[(CHANNEL, msg_ts)].blocks, "<@U1688>")

    # "Not me" by someone else is refused; by the person it relabels to unknown, for everyone.
    refused = await press(bot, fake, "U1998", "not_me", value, msg_ts)
    assert "Only <@U1688>" in refused["text"] and "<@U1688>" in summary()
    done = await press(bot, fake, "U1688", "not_me", value, msg_ts)
    assert "unknown" in done["text"] and "<@U1688>" not in summary() and "Unknown speaker 2" in summary()

    # "This is me" on the speaker nobody was matched to shows the clicker's claim and points to /enroll.
    rec = await get_recording(db, rec_id)
    unmatched = [m["speaker"] for m in rec.result["voiceprints"] if m.get("match") is None]
    talk = {sp: sum(d["end"] - d["start"] for d in rec.result["diarization"] if d["speaker"] == sp)
            for sp in unmatched}
    fourth = max(talk, key=talk.get)
    offer = await press(bot, fake, UNKNOWN, "this_is_me", f"{rec_id}:{fourth}", msg_ts)
    assert f"claimed by <@{UNKNOWN}>" in summary()
    assert "claimed by you" in offer["text"] and "/enroll" in offer["text"] and not offer.get("blocks")
    # A second "This is me" by the same person on another speaker is refused.
    other = next(b["accessory"]["value"] for b in fake.messages[(CHANNEL, msg_ts)].blocks
                 if "accessory" in b and "Unknown speaker" in b["text"]["text"] and "claimed" not in b["text"]["text"])
    again = await press(bot, fake, UNKNOWN, "this_is_me", other, msg_ts)
    assert "already named" in again["text"]


# -- a crash, a claim on a deleted file, a worker process ----------------------------------------------

async def test_a_crash_mid_job_is_taken_over_once_the_lease_expires_and_posts_one_summary(local_engine, tmp_path):
    """An instance that dies mid-job leaves its lease held (nothing releases it); another instance takes the job
    over once the lease has expired (10 s here), resumes it and posts exactly one summary and one chart. (With 5 s,
    a machine loaded to 16 on 2 cores once let the second instance's own renewal slip: its retry then rightly
    uploaded no chart a second time, since the first attempt had begun one.)"""
    from storage.models import utcnow

    async with slack_world(local_engine, tmp_path, run_jobs=False, job_lease_seconds=10) as (fake, db, web):
        fake.members[CHANNEL] = [*READERS, UNKNOWN, "UBOT"]
        await enroll_readers(web.services, {"U2033": "2033"}, tmp_path)
        edits = fake.gate("chat.update")  # the first instance's first edit of its reply holds it mid-job
        first = await BotUnderTest(fake, web.settings, db, web.engine, cpu=shared_cpu()).start()
        f = fake.add_file("planning.wav", "audio/wav",
                          wav_bytes(concat([(r, i) for i in (8, 9) for r in ("2414", "2033")], pause=0.5)))
        event = web.share_event(f)
        assert (await web.event(event, event_id="EvCrash")).status == 200
        await asyncio.wait_for(edits.reached.wait(), 120)
        running = await recording_for(db, f.id)
        assert running.engine_job_id and running.lease_owner, "the first instance holds the job at the engine"

        await first.crash()
        left = await recording_for(db, f.id)
        assert (left.state.value, left.lease_owner) == ("running", running.lease_owner), "a crash releases nothing"
        edits.open()  # what the dead instance sent arrives late, as a slow request would
        second = await BotUnderTest(fake, web.settings, db, web.engine, cpu=shared_cpu()).start()
        try:
            taken = await fake.wait_for(
                lambda: _held_by_another(db, f.id, running.lease_owner), timeout=120, what="a takeover")
            assert utcnow() >= left.lease_expires_at, "taken over before the dead instance's lease expired"
            rec = await wait_status(fake, db, f.id, {"posted", "failed"})
            assert rec.state.value == "posted", rec.error_message
            assert taken.attempts >= 2 and rec.attempts >= 2
            reply = await fake.one_reply(CHANNEL, event["ts"])
            assert "Unknown speaker" in str(reply.blocks) or "<@" in str(reply.blocks)
            posts = [c for c in fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == event["ts"]]
            assert len(posts) == 1
            uploads = [c for c in fake.calls_to("files.completeUploadExternal")
                       if c.params.get("thread_ts") == event["ts"]]
            assert len(uploads) == 1
        finally:
            await second.stop()


async def _held_by_another(db, file_id: str, dead_owner: str):
    rec = await recording_for(db, file_id)
    return rec if rec.lease_owner not in (dead_owner, None) or rec.state.value == "posted" else None


async def test_this_is_me_when_the_file_is_gone_still_records_the_claim(world, enrolled):
    fake, db, bot = world
    f = fake.add_file("review.wav", "audio/wav", wav_bytes(utterance(UNKNOWN[1:], 8)))  # nobody enrolled speaks
    event = bot.share_event(f)
    assert (await bot.event(event, event_id="EvGone")).status == 200
    rec = await wait_status(fake, db, f.id, {"posted", "failed"})
    assert rec.state.value == "posted", rec.error_message
    summary = await fake.one_reply(CHANNEL, event["ts"])
    del fake.files[f.id]  # deleted from Slack; our copy of the audio was deleted after processing
    fake.members[CHANNEL].append("UNEW")  # someone who joined the channel since
    value = speaker_of(summary.blocks, "Unknown speaker")
    reply = await press(bot, fake, "UNEW", "this_is_me", value, summary.ts)
    assert "claimed by you" in reply["text"] and "/enroll" in reply["text"] and not reply.get("blocks")
    assert "claimed by <@UNEW>" in str(fake.messages[(CHANNEL, summary.ts)].blocks)


async def test_enroll_delete_removes_the_voiceprint(world, enrolled):
    _fake, db, bot = world
    from storage.voiceprints import get_voiceprint

    assert await get_voiceprint(db, "T0001", "U2033") is not None
    resp = await bot.command("U2033", "delete")
    assert "deleted" in (await resp.text())
    assert await get_voiceprint(db, "T0001", "U2033") is None
    assert "not enrolled" in await (await bot.command("U2033", "status")).text()


async def test_worker_process_posts_the_summary_and_stops_on_sigterm(local_engine, tmp_path):
    """`python -m bot worker` as its own process on the same database; the web app only stores the file (the
    progress reply and the summary are the worker's)."""
    import os
    import signal
    import subprocess
    import sys

    from tests.shared_models import share_model_cache

    async with slack_world(local_engine, tmp_path, run_jobs=False) as (fake, db, web):  # no job runner here
        fake.members[CHANNEL] = [*READERS, UNKNOWN, "UBOT"]
        await enroll_readers(web.services, {"U1688": "1688", "U1998": "1998"}, tmp_path)
        f = fake.add_file("sync.wav", "audio/wav", wav_bytes(concat([(r, i) for i in (8, 9) for r in ("1688", "1998")],
                                                                    pause=0.5)))
        event = web.share_event(f)
        assert (await web.event(event, event_id="EvWorker")).status == 200
        assert await recording_for(db, f.id) is not None, "the file is stored before Slack's event is acknowledged"

        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_", "ENGINE"))}
        env |= {"SLACK_BOT_TOKEN": fake.token, "SLACK_API_URL": fake.api_url,
                "DATABASE_URL": web.settings.effective_database_url, "ENGINE": "local", "JOB_POLL_SECONDS": "0.5",
                "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                "VAR_DIR": str(share_model_cache(tmp_path / "worker-var")),
                "DATA_ENCRYPTION_KEYS": web.settings.data_encryption_keys.get_secret_value()}  # the world's key
        log_path = tmp_path / "worker.log"
        with log_path.open("w") as log:  # a file, not a pipe: a chatty worker must never block on output
            worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "worker", cwd=tmp_path,
                                                          env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            [reply] = await fake.wait_for(lambda: fake.thread(CHANNEL, event["ts"]), what="the worker's progress reply")
            assert "Identifying speakers in sync.wav" in reply.text
            rec = await wait_status(fake, db, f.id, {"posted", "failed"}, timeout=300)
            assert rec.state.value == "posted", rec.error_message
            [summary] = fake.thread(CHANNEL, event["ts"])
            assert "<@U1688>" in str(summary.blocks)
            worker.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(worker.wait(), 60)
            output = log_path.read_text()
            assert code == 0, output
            assert f"recording {rec.id}: summary posted" in output, output  # the worker did it, no one else
            assert fake.token not in output  # never log tokens
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()


async def test_app_uninstalled_removes_voiceprints_and_results(world, meeting_posted):
    fake, db, bot = world
    from storage.recordings import get_recording
    from storage.voiceprints import get_voiceprint

    assert (await bot.event({"type": "app_uninstalled"}, event_id="EvUninstall")).status == 200
    rec_id = meeting_posted[2].id

    async def gone():
        rec = await get_recording(db, rec_id)
        return await get_voiceprint(db, "T0001", "U1688") is None and (rec is None or rec.result is None)

    await fake.wait_for(gone, timeout=30, what="uninstall to purge the workspace")


async def test_no_recording_audio_is_left_behind(world):
    from bot.scratch import scratch_root

    tmp = scratch_root(world[2].settings.var_dir)  # the bot's own temp folder, where every download goes
    assert tmp.is_dir() and [p for p in tmp.rglob("*") if p.is_file()] == []
