"""Failure texts that reach people name no file of Voice ID's own.

The engine decodes its own copy of a clip or recording: a temporary file of the bot (embedded engine) or
the engine server's media file (a hash of the media key). Their names are internal details like URLs, so
the engine's messages say "The clip" / "The recording", and a channel or DM shows no storage name. Real
embedded engine, real engine server over HTTP, the real bot endpoint with the fake Slack.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.engines.base import Engine
from bot.schema import IdentifyRequest, Job, JobStatus, VoiceprintInput, VoiceprintRequest
from bot.summary.status import render_failure
from storage.database import Database
from storage.migrate import upgrade
from testbed.fake_slack import BotUnderTest, FakeSlack, bot_settings
from tests.engine_http_support import client_for, engine_server, utterance
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import enroll

pytestmark = pytest.mark.asyncio(loop_scope="module")

JUNK = b"Meeting notes, not a recording.\n" * 200
# Storage names: mkstemp's `tmp…`, the engine server's sha256 `.bin`, the bot's `voiceid/<hex>` media keys.
INTERNAL = re.compile(r"\btmp\w+|[0-9a-f]{16,}|\.bin\b|\.part\b|media://")


async def finished(engine: Engine, job: Job) -> Job:
    return job if job.status.final else await engine.wait(job.job_id, poll=0.1, timeout=180)


async def test_enrollment_dm_for_a_bad_clip_names_no_temporary_file(local_engine, tmp_path):
    fake = FakeSlack()
    await fake.start()
    url = f"sqlite+aiosqlite:///{tmp_path / 'voiceid.db'}"
    await upgrade(url)
    db = Database(url)
    bot = await BotUnderTest(fake, bot_settings(fake, url, var_dir=tmp_path / "var"), db, local_engine, cpu=shared_cpu()).start()
    try:
        dm = await enroll(bot, fake, "U1", JUNK, name="me.wav")
    finally:
        await bot.stop()
        await db.dispose()
        await fake.close()
    assert dm.startswith(":warning: Your voice was not enrolled: The clip is not an audio or video file"), dm
    assert not INTERNAL.search(dm), dm


async def test_engine_server_errors_name_no_media_file_and_the_channel_shows_none(local_engine, tmp_path):
    junk = tmp_path / "notes.wav"
    junk.write_bytes(JUNK)
    async with engine_server(local_engine, tmp_path / "engine") as server:
        client = client_for(server)
        try:
            made = await finished(client, await client.submit_voiceprint(
                VoiceprintRequest(url=await client.upload(Path(utterance("1688", 0))))))
            vp = made.voiceprint_output().voiceprint
            bad_clip = await finished(client, await client.submit_voiceprint(
                VoiceprintRequest(url=await client.upload(junk))))
            bad_recording = await finished(client, await client.submit_identify(IdentifyRequest(
                url=await client.upload(junk), voiceprints=[VoiceprintInput(label="U1", voiceprint=vp)])))
        finally:
            await client.close()
    assert bad_clip.status is JobStatus.failed and bad_clip.error.code == "not_audio"
    assert bad_clip.error.message.startswith("The clip is not an audio or video file"), bad_clip.error.message
    assert bad_recording.status is JobStatus.failed and bad_recording.error.code == "not_audio"
    assert bad_recording.error.message.startswith("The recording is not an audio"), bad_recording.error.message
    shown = render_failure("standup.m4a", bad_recording.error.code, bad_recording.error.message, ref="ABC123")
    assert "standup.m4a: The recording is not an audio or video file" in shown.text
    for text in (bad_clip.error.message, bad_recording.error.message, shown.text, str(shown.blocks)):
        assert not INTERNAL.search(text), text


async def test_a_vanished_temporary_file_is_our_failure_with_a_ref(tmp_path):
    from bot.engines.http import HTTPEngine
    from bot.errors import EngineError
    from bot.failures import public_reason

    engine = HTTPEngine("http://127.0.0.1:9", "engine-key", engine_id="server", name="the engine server", recommended_threshold=50.0)
    try:
        with pytest.raises(EngineError) as err:
            await engine.upload(tmp_path / "tmpq1w2e3r4.wav")
    finally:
        await engine.close()
    shown = public_reason(err.value.code, err.value.message, "ABC123")
    assert shown == "something went wrong on our side (ref ABC123).", shown
