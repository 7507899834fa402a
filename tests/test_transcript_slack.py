"""Transcripts in the Slack thread and a chart that follows corrections, end to end through the real
`/slack/events` endpoint, the real job runner and the fake Slack Web API (recognition is a stub here; the
real recognizer's own tests are in test_transcript_speech and test_transcript_slack_speech)."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

from storage.models import utcnow
from storage.recordings import get_recording
from storage.thread import CHART, TRANSCRIPT, get_output
from storage.voiceprints import upsert_voiceprint
from testbed.fake_slack import BOT_USER_ID, TEAM_ID
from tests.reliability_support import CHANNEL, ScriptedEngine, wav
from tests.slack_e2e_support import press, slack_world, wait_status
from tests.transcript_slack_support import StubRecognizer

LINK = re.compile(r"<(https://fake\.slack\.com/files/[^|>]+)\|standup-transcript\.md>")


async def shared(fake, db, bot):
    """U1 ("Ann") enrolled; a 3 s recording shared through the endpoint and run to its end by the job runner
    (which recognises with the bot's recognizer double)."""
    fake.members[CHANNEL] = ["U1", "U2", BOT_USER_ID]
    fake.users.update({"U1": "Ann", "U2": "Bob"})
    await upsert_voiceprint(db, team_id=TEAM_ID, user_id="U1", engine="local", model_id="m", voiceprint="vp",
                            consent_at=utcnow(), clip_duration=10.0)
    f = fake.add_file("standup.wav", "audio/wav", wav())
    event = bot.share_event(f)
    assert (await bot.event(event)).status == 200
    rec = await wait_status(fake, db, f.id, {"posted", "failed"}, timeout=60)
    assert rec.state.value == "posted", rec.error_message
    reply = await fake.one_reply(CHANNEL, event["ts"])
    return rec, event, reply


def uploads(fake, event) -> list:
    return [c for c in fake.calls_to("files.completeUploadExternal")
            if c.done and c.params.get("thread_ts") == event["ts"]]


def charts_in_slack(fake) -> list:
    return [f for f in fake.files.values() if f.name == "timeline.png"]


async def test_transcript_file_in_the_thread_with_the_right_names(tmp_path: Path):
    recognizer = StubRecognizer()
    async with slack_world(ScriptedEngine(polls=1), tmp_path, transcript=True,
                           speech=recognizer) as (fake, db, bot):
        rec, event, reply = await shared(fake, db, bot)

        # The summary was shown before recognition ended, with the transcript still on its way.
        shown_first = [blocks for _, blocks in reply.history if "Who spoke in" in str(blocks)]
        assert shown_first and "transcribing" in str(shown_first[0])

        chart, transcript = uploads(fake, event)
        assert [f["title"] for f in chart.params["files"]] == ["Who spoke when in standup.wav"]
        assert [f["title"] for f in transcript.params["files"]] == ["Transcript of standup.wav",
                                                                    "Transcript of standup.wav (captions)"]
        md_id, vtt_id = (f["id"] for f in transcript.params["files"])
        assert (fake.files[md_id].name, fake.files[vtt_id].name) == ("standup-transcript.md", "standup-transcript.vtt")
        md = fake.files[md_id].data.decode()
        assert "**0:00:00 Ann:** Hello team," in md
        assert "**0:00:02 Speaker 1:** hi Ann." in md
        vtt = fake.files[vtt_id].data.decode()
        assert vtt.startswith("WEBVTT") and "<v Ann>Hello team," in vtt and "<v Speaker 1>hi Ann." in vtt

        # The summary links the transcript; the words are stored in the result (so retention clears them).
        link = LINK.search(str(reply.blocks))
        assert link and link.group(1) == fake.file_object(fake.files[md_id])["permalink"]
        transcript = await get_output(db, rec.id, TRANSCRIPT)
        assert transcript.file_id == md_id and transcript.error is None
        assert [w["speaker"] for w in rec.result["wordLevelTranscription"]] == ["SPEAKER_00"] * 2 + ["SPEAKER_01"] * 2
        # Recognition had the audio; its copy was deleted right after.
        [path] = recognizer.paths
        assert not path.exists()


async def test_a_correction_redraws_the_chart_and_deletes_the_old_one(tmp_path: Path):
    async with slack_world(ScriptedEngine(polls=1), tmp_path, transcript=True,
                           speech=StubRecognizer()) as (fake, db, bot):
        rec, event, reply = await shared(fake, db, bot)
        old_id = (await get_output(db, rec.id, CHART)).file_id
        old_png = fake.files[old_id].data
        answer = await press(bot, fake, "U2", "this_is_me", f"{rec.id}:SPEAKER_01", reply.ts)
        assert "claimed by you" in answer["text"]
        await fake.wait_for(lambda: fake.calls_to("files.delete"), timeout=60, what="the old chart deleted")
        await bot.drain()
        now, chart = await get_recording(db, rec.id), await get_output(db, rec.id, CHART)
        assert chart.file_id != old_id and old_id not in fake.files
        assert [f.id for f in charts_in_slack(fake)] == [chart.file_id]
        assert fake.files[chart.file_id].data.startswith(b"\x89PNG") and fake.files[chart.file_id].data != old_png
        assert (chart.seq, now.relabel_seq, chart.lock_owner) == (1, 1, None)
        redrawn = uploads(fake, event)[-1]
        assert redrawn.params["thread_ts"] == event["ts"] and redrawn.params["channel_id"] == CHANNEL
        # The summary says the same as the new chart, and still links the transcript.
        reply = await fake.one_reply(CHANNEL, event["ts"])
        assert "claimed by <@U2>" in str(reply.blocks) and LINK.search(str(reply.blocks))


async def test_racing_corrections_leave_one_chart_with_the_last_names(tmp_path: Path):
    async with slack_world(ScriptedEngine(polls=1), tmp_path, transcript=True,
                           speech=StubRecognizer()) as (fake, db, bot):
        rec, event, reply = await shared(fake, db, bot)
        await asyncio.gather(press(bot, fake, "U2", "this_is_me", f"{rec.id}:SPEAKER_01", reply.ts),
                             press(bot, fake, "U1", "not_me", f"{rec.id}:SPEAKER_00", reply.ts))
        await bot.drain()

        async def settled():
            now, chart = await get_recording(db, rec.id), await get_output(db, rec.id, CHART)
            return chart if chart.seq == now.relabel_seq == 2 and chart.lock_owner is None else None

        chart = await fake.wait_for(settled, timeout=60, what="the chart drawn with both corrections")
        assert [f.id for f in charts_in_slack(fake)] == [chart.file_id]
        drawn = len(uploads(fake, event)) - 2  # the first chart and the transcript
        assert drawn in (1, 2) and len(fake.calls_to("files.delete")) == drawn


async def test_transcript_off_posts_none(tmp_path: Path):
    recognizer = StubRecognizer()
    async with slack_world(ScriptedEngine(polls=1), tmp_path, transcript=False,
                           speech=recognizer) as (fake, db, bot):
        rec, event, reply = await shared(fake, db, bot)
        assert [f["title"] for c in uploads(fake, event) for f in c.params["files"]] == [
            "Who spoke when in standup.wav"]
        assert "Transcript" not in str(reply.blocks) + str(reply.history)
        assert recognizer.paths == [] and "wordLevelTranscription" not in rec.result


async def test_a_failed_transcript_leaves_the_summary_with_a_note(tmp_path: Path, caplog):
    recognizer = StubRecognizer(fail=RuntimeError("The speech recognizer's worker stopped unexpectedly."))
    async with slack_world(ScriptedEngine(polls=1), tmp_path, transcript=True,
                           speech=recognizer) as (fake, db, bot):
        rec, event, reply = await shared(fake, db, bot)
        text = str(reply.blocks)
        assert "<@U1>" in text and "This is me" in text  # the summary itself is untouched
        note = re.search(r"could not be made this time \(ref ([0-9A-F]{6})\)", text)
        transcript = await get_output(db, rec.id, TRANSCRIPT)
        assert note and transcript.error == note.group(1)
        assert "stopped unexpectedly" not in text  # internals go to the log only
        assert any(note.group(1) in r.getMessage() and "stopped unexpectedly" in r.getMessage()
                   for r in caplog.records)
        assert len(uploads(fake, event)) == 1 and transcript.file_id is None


async def test_progress_shows_while_recognition_runs(tmp_path: Path, monkeypatch):
    import bot.jobs.transcript_step

    monkeypatch.setattr(bot.jobs.transcript_step, "PROGRESS_EVERY_SECONDS", 0.05)
    recognizer = StubRecognizer(gate=asyncio.Event())
    async with slack_world(ScriptedEngine(polls=1), tmp_path, transcript=True,
                           speech=recognizer) as (fake, db, bot):
        task = asyncio.create_task(shared(fake, db, bot))
        await asyncio.wait_for(recognizer.started.wait(), 60)

        def progress_shown():
            return [m for m in fake.messages.values() if "transcribing… `▓▓▓▓▓▓░░░░░░ 50%`" in str(m.blocks)]

        await fake.wait_for(progress_shown, timeout=30, what="transcript progress in the summary")
        recognizer.gate.set()
        *_, reply = await task
        assert LINK.search(str(reply.blocks)) and "transcribing" not in str(reply.blocks)
