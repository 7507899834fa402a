"""The Slack bot end to end: signed requests to the real aiohttp endpoint, the fake Slack Web API, a real
SQLite database, the real local engine and real speech. Tests run in order and share one workspace."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from testbed.fake_slack import BotUnderTest, FakeSlack
from tests.slack_e2e_support import (
    SR,
    concat,
    enroll,
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


# -- enrollment -------------------------------------------------------------------------------------

async def test_enroll_three_readers(world):
    fake, db, bot = world
    for user, parts in ENROLL_CLIPS.items():
        reply = await enroll(bot, fake, user, enrollment_clip(parts))
        assert "voiceprint is saved" in reply, reply
    from storage.voiceprints import get_voiceprint

    for user in ENROLL_CLIPS:
        assert await get_voiceprint(db, "T0001", user) is not None
    resp = await bot.command("U1688", "status")
    assert "You are enrolled since" in await resp.text()


async def test_re_enrolling_asks_for_confirmation_then_replaces(world):
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

def thread_messages(fake: FakeSlack, ts: str):
    return fake.thread(CHANNEL, ts)


async def test_meeting_summary_names_three_and_uploads_chart(world):
    fake, db, bot = world
    f = fake.add_file("standup.wav", "audio/wav", wav_bytes(meeting()))
    event = bot.share_event(f)
    assert (await bot.event(event, event_id="EvMeeting")).status == 200
    rec = await wait_status(fake, db, f.id, {"posted", "failed"})
    assert rec.state.value == "posted", rec.error_message
    [reply] = thread_messages(fake, event["ts"])
    text = str(reply.blocks)
    for user in READERS:
        assert f"<@{user}>" in text
    assert "Unknown speaker 1" in text and f"<@{UNKNOWN}>" not in text
    assert "talk time" in text and "This is me" in text and "Not me" in text
    assert reply.text.startswith("Speakers in standup.wav")
    assert any("Identifying speakers in standup.wav" in h[0] for h in reply.history)
    [upload] = fake.calls_to("files.completeUploadExternal")
    assert upload.params["thread_ts"] == event["ts"] and upload.params["channel_id"] == CHANNEL
    png = fake.files[rec.chart_file_id].data
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    world_state["meeting"] = (rec.id, event["ts"], reply.ts)


world_state: dict = {}


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
    [reply] = thread_messages(fake, event["ts"])
    assert "Could not identify speakers in silence.wav" in reply.text and "silent" in reply.text
    assert thread_messages(fake, ignored["ts"]) == []
    assert await recording_for(db, f.id) is None


async def test_corrupt_recording_gets_clear_message(world):
    fake, db, bot = world
    f = fake.add_file("broken.m4a", "audio/mp4", b"\x00\x00\x00\x18ftypM4A " + bytes(range(256)) * 40)
    event = bot.share_event(f)
    await bot.event(event, event_id="EvCorrupt")
    rec = await wait_status(fake, db, f.id, {"failed", "posted"})
    assert rec.state.value == "failed"
    [reply] = thread_messages(fake, event["ts"])
    assert "Could not identify speakers in broken.m4a" in reply.text
    assert rec.error_code in ("corrupt", "not_audio", "no_audio_track", "empty"), rec.error_code


async def test_html_page_instead_of_the_recording(world):
    fake, db, bot = world
    f = fake.add_file("review.m4a", "audio/mp4", b"irrelevant", serve_html=True)
    event = bot.share_event(f)
    await bot.event(event, event_id="EvHtml")
    rec = await wait_status(fake, db, f.id, {"failed", "posted"})
    assert rec.state.value == "failed" and rec.error_code == "html_page"
    [reply] = thread_messages(fake, event["ts"])
    assert "web page instead of review.m4a" in reply.text and "reinstall" in str(reply.blocks)


# -- feedback ---------------------------------------------------------------------------------------

async def test_this_is_me_and_not_me(world):
    fake, db, bot = world
    from storage.recordings import get_recording

    rec_id, _, msg_ts = world_state["meeting"]
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


# -- restart --------------------------------------------------------------------------------------

async def test_restart_in_the_middle_of_a_job_posts_one_summary(world, local_engine):
    fake, db, bot = world
    from storage.recordings import get_recording

    await bot.stop()  # the first instance goes away; a new one takes over mid-job
    first = await BotUnderTest(fake, bot.settings, db, local_engine).start()
    f = fake.add_file("planning.wav", "audio/wav", wav_bytes(meeting()[: 90 * SR]))
    event = first.share_event(f)
    await first.event(event, event_id="EvRestart")

    async def running():
        rec = await recording_for(db, f.id)
        return rec if rec and rec.engine_job_id else None

    await fake.wait_for(running, timeout=120, what="the first instance to start the engine job")
    await first.stop()  # crash-like: the pipeline is cancelled with its lease held
    second = await BotUnderTest(fake, bot.settings, db, local_engine).start()
    world_state["bot"] = second
    try:
        rec = await wait_status(fake, db, f.id, {"posted", "failed"})
        assert rec.state.value == "posted", rec.error_message
        assert rec.attempts >= 2 or (await get_recording(db, rec.id)).attempts >= 2
        [reply] = thread_messages(fake, event["ts"])
        assert "Unknown speaker" in str(reply.blocks) or "<@" in str(reply.blocks)
        world_state["planning"] = (f.id, reply.ts)
        posts = [c for c in fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == event["ts"]]
        assert len(posts) == 1
        uploads = [c for c in fake.calls_to("files.completeUploadExternal") if c.params.get("thread_ts") == event["ts"]]
        assert len(uploads) == 1
    finally:
        bot.client = None
        world_state["restarted"] = second


async def test_this_is_me_when_the_file_is_gone_still_records_the_claim(world):
    fake, _, _ = world
    bot = world_state["restarted"]
    file_id, msg_ts = world_state["planning"]
    del fake.files[file_id]  # deleted from Slack; our copy of the audio was deleted after processing
    fake.members[CHANNEL].append("UNEW")  # someone who joined the channel since
    value = speaker_of(fake.messages[(CHANNEL, msg_ts)].blocks, "Unknown speaker")
    reply = await press(bot, fake, "UNEW", "this_is_me", value, msg_ts)
    assert "claimed by you" in reply["text"] and "/enroll" in reply["text"] and not reply.get("blocks")
    assert "claimed by <@UNEW>" in str(fake.messages[(CHANNEL, msg_ts)].blocks)


async def test_enroll_delete_removes_the_voiceprint(world):
    _fake, db, _ = world
    bot = world_state.get("restarted") or world[2]
    from storage.voiceprints import get_voiceprint

    assert await get_voiceprint(db, "T0001", "U2033") is not None
    resp = await bot.command("U2033", "delete")
    assert "deleted" in (await resp.text())
    assert await get_voiceprint(db, "T0001", "U2033") is None
    assert "not enrolled" in await (await bot.command("U2033", "status")).text()


async def test_worker_process_posts_the_summary_and_stops_on_sigterm(world, tmp_path):
    """`python -m bot worker` as its own process on the same database; the web app only queues and replies."""
    import os
    import signal
    import subprocess
    import sys

    fake, db, _ = world
    for in_process in (world_state.pop("restarted", None), world[2]):
        if in_process is not None:
            await in_process.stop()  # no job runner left in this process: only the worker can take the job
    web = await BotUnderTest(fake, world[2].settings, db, world[2].engine, run_jobs=False).start()
    world_state["restarted"] = web  # the later tests send their requests here
    f = fake.add_file("sync.wav", "audio/wav", wav_bytes(concat([(r, i) for i in (8, 9) for r in ("1688", "1998")],
                                                                pause=0.5)))
    event = web.share_event(f)
    await web.event(event, event_id="EvWorker")
    [reply] = await fake.wait_for(lambda: fake.thread(CHANNEL, event["ts"]), what="the immediate reply")
    assert "Identifying speakers in sync.wav" in reply.text

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_", "ENGINE"))}
    env |= {"SLACK_BOT_TOKEN": fake.token, "SLACK_API_URL": fake.api_url, "DATABASE_URL": world[2].settings.effective_database_url,
            "ENGINE": "local", "JOB_POLL_SECONDS": "0.5", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:  # a file, not a pipe: a chatty worker must never block on output
        worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "worker", cwd=tmp_path, env=env,
                                                      stdout=log, stderr=subprocess.STDOUT)
    try:
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


async def test_app_uninstalled_removes_voiceprints_and_results(world):
    _fake, db, _ = world
    bot = world_state.get("restarted") or world[2]
    from storage.recordings import get_recording
    from storage.voiceprints import get_voiceprint

    assert (await bot.event({"type": "app_uninstalled"}, event_id="EvUninstall")).status == 200
    rec_id = world_state["meeting"][0]

    async def gone():
        rec = await get_recording(db, rec_id)
        return await get_voiceprint(db, "T0001", "U1688") is None and (rec is None or rec.result is None)

    deadline = asyncio.get_running_loop().time() + 30
    while not await gone():
        assert asyncio.get_running_loop().time() < deadline, "uninstall did not purge the workspace"
        await asyncio.sleep(0.1)


async def test_no_recording_audio_is_left_behind(world):
    from bot.scratch import scratch_root

    tmp = scratch_root(world[2].settings.var_dir)  # the bot's own temp folder, where every download goes
    assert tmp.is_dir() and [p for p in tmp.rglob("*") if p.is_file()] == []


@pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
async def _stop_restarted():
    yield
    if world_state.get("restarted") is not None:
        await world_state["restarted"].stop()
