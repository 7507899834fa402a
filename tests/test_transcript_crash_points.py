"""The transcript step under crashes and takeovers, on both databases: the summary is never undone, the
transcript is uploaded at most once, and recognition interrupted before the upload is simply done again."""
from __future__ import annotations

import pytest

import bot.jobs.chart_step
import bot.jobs.recording_job
from storage.models import RecordingStatus
from storage.recordings import get_recording
from storage.thread import CHART, TRANSCRIPT, get_output
from tests.reliability_support import (  # noqa: F401 — fixtures
    Crash,
    Proc,
    World,
    summary_shown,
    world_fixture,
)
from tests.test_crash_points import crash_at
from tests.transcript_slack_support import StubRecognizer


def transcribing(world: World, **settings) -> Proc:
    return Proc(world, transcript=True, speech=StubRecognizer(), **settings)


def transcript_uploads(world: World, event: dict) -> list:
    return [c for c in world.chart_uploads(event) if "transcript" in str(c.params.get("files")).lower()]


async def ended(world: World, event: dict, rec_id: int):
    rec = await get_recording(world.db, rec_id)
    assert rec.state is RecordingStatus.posted, (rec.status, rec.error_code, rec.error_message)
    [reply] = world.replies(event)
    assert summary_shown(reply)
    assert await Proc(world).claim() is None, "nothing is left to do"
    return rec, reply


async def test_crash_during_recognition_is_recognised_again_and_uploaded_once(world: World):
    event, rec = await world.share()
    first = transcribing(world)
    first.speech.fail = Crash("recognition")
    with pytest.raises(Crash):
        await first.claim_and_run()
    [reply] = world.replies(event)
    assert summary_shown(reply), "the summary is shown before recognition"
    await world.expire_leases()
    second = transcribing(world)
    await second.claim_and_run()
    rec, reply = await ended(world, event, rec.id)
    assert len(transcript_uploads(world, event)) == 1 and (await get_output(world.db, rec.id, TRANSCRIPT)).file_id
    assert "standup-transcript.md" in str(reply.blocks)
    assert len(world.chart_uploads(event)) == 2, "one chart, one transcript"


@pytest.mark.parametrize("after_the_call", [False, True], ids=["before the upload", "after the upload"])
async def test_crash_around_the_transcript_upload_never_uploads_twice(world: World, monkeypatch, after_the_call):
    event, rec = await world.share()
    first = transcribing(world)
    crash_at(monkeypatch, first.recording_job.transcripts, "upload_transcript", after_the_call=after_the_call)
    with pytest.raises(Crash):
        await first.claim_and_run()
    monkeypatch.undo()
    await world.expire_leases()
    second = transcribing(world)
    await second.claim_and_run()
    rec, reply = await ended(world, event, rec.id)
    assert len(transcript_uploads(world, event)) == (1 if after_the_call else 0)
    assert second.speech.paths == [], "the stored words were not recognised again"
    transcript = await get_output(world.db, rec.id, TRANSCRIPT)
    assert transcript.error == "interrupted" and "upload was interrupted" in str(reply.blocks)


async def test_a_lost_lease_during_recognition_posts_nothing_more(world: World, monkeypatch):
    """Another worker took the recording over while this one recognised: this one stops without uploading."""
    event, rec = await world.share()
    first = transcribing(world)

    async def taken_over(*args, **kwargs):
        await world.expire_leases()
        await Proc(world).claim()  # another worker holds it now
        raise bot.jobs.recording_job.LeaseLost()

    monkeypatch.setattr(first.recording_job.transcripts, "recognize", taken_over)
    await first.claim_and_run()
    assert transcript_uploads(world, event) == []
    assert (await get_recording(world.db, rec.id)).state is RecordingStatus.succeeded


async def test_a_correction_while_the_chart_is_drawn_is_drawn_too(world: World, monkeypatch):
    """"This is me" pressed after the summary was shown but before its chart was stored: the chart still
    ends up showing the claim (the summary already does)."""
    from storage.thread import set_relabel

    _, rec = await world.share()
    proc = Proc(world)
    real = bot.jobs.chart_step.send_timeline

    async def corrected_meanwhile(*args, **kwargs):
        file_id = await real(*args, **kwargs)
        if not world.fake.calls_to("files.delete"):
            await set_relabel(world.db, rec.id, "SPEAKER_01", "U2")
        return file_id

    monkeypatch.setattr(bot.jobs.chart_step, "send_timeline", corrected_meanwhile)
    await proc.claim_and_run()
    await world.fake.wait_for(lambda: world.fake.calls_to("files.delete"), timeout=30, what="the redraw")
    await proc.background.wait()
    now, chart = await get_recording(world.db, rec.id), await get_output(world.db, rec.id, CHART)
    assert (chart.seq, now.relabel_seq) == (1, 1)
    assert [f.id for f in world.fake.files.values() if f.name == "timeline.png"] == [chart.file_id]
