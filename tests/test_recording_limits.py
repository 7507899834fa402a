"""MAX_RECORDING_HOURS holds for every engine, checked by the bot before any engine sees the file: with
ENGINE=server (as with pyannoteAI, which bills by the hour) a 10-hour recording under the size limit gets the
clear "too long" message and never reaches the engine. Slack's stated duration refuses it before the download;
else the downloaded file's own length does — its header, or its packets' times when the header says less (the
engine's decoder checks again as the last line). Signed requests
to the real endpoint, the fake Slack Web API, our real engine server behind a recording proxy."""
from __future__ import annotations

import io
import struct
import wave

import av
import numpy as np
import pytest_asyncio

from bot.config import Settings
from bot.engines.factory import make_engine
from testbed.fake_slack import BOT_USER_ID, FakeSlack
from tests.engine_http_support import API_KEY, engine_server
from tests.process_support import EngineProxy
from tests.slack_e2e_support import recording_for, slack_world, wait_status

CHANNEL = "C0001"
TEN_HOURS_S = 10 * 3600
TOO_LONG = "The recording is 10 h long; recordings can be at most 4 h."


def ten_hours_of_low_rate_audio() -> bytes:
    """A real 10-hour WAV that costs nothing to make: 8-bit mono at 100 samples a second (3.6 MB)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(100)
        w.writeframes(bytes([128]) * (100 * TEN_HOURS_S))
    return buf.getvalue()


def ten_hours_that_say_one_minute() -> bytes:
    """A real 10-hour QuickTime file (8-bit PCM at 100 Hz, 3.6 MB) whose movie and track headers say it runs one
    minute: the length an engine billing by the hour would find, and a header check would not."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mov") as out:
        stream = out.add_stream("pcm_u8", rate=100, layout="mono")
        ten_minutes = np.full((1, 100 * 600), 128, dtype=np.uint8)
        for i in range(TEN_HOURS_S // 600):
            frame = av.AudioFrame.from_ndarray(ten_minutes, format="u8", layout="mono")
            frame.sample_rate, frame.pts = 100, i * ten_minutes.shape[1]
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    data = bytearray(buf.getvalue())
    for box in (b"mvhd", b"mdhd"):  # version 0: flags, created, modified, timescale, duration (32-bit fields)
        at = data.find(box) + 4
        assert data[at] == 0
        (timescale,) = struct.unpack_from(">I", data, at + 12)
        struct.pack_into(">I", data, at + 16, 60 * timescale)
    return bytes(data)


@pytest_asyncio.fixture
async def world(local_engine, tmp_path):
    """The bot with ENGINE=server, talking to our engine server through a proxy that logs every call."""
    async with engine_server(local_engine, tmp_path / "engine-data") as server:
        proxy = EngineProxy(str(server.make_url("")).rstrip("/"))
        await proxy.start()
        try:
            settings = {"engine_url": proxy.url, "engine_api_key": API_KEY}
            engine = make_engine(Settings(_env_file=None, engine="server", **settings))
            async with slack_world(engine, tmp_path, **settings) as (fake, db, bot):
                fake.members[CHANNEL] = ["U0", BOT_USER_ID]  # nobody enrolled: a diarize-only job would follow
                yield fake, db, bot, proxy
            await engine.close()
        finally:
            await proxy.close()


async def refused(fake: FakeSlack, db, bot, f) -> str:
    event = bot.share_event(f)
    assert (await bot.event(event, event_id=f"Ev{f.id}")).status == 200
    rec = await wait_status(fake, db, f.id, {"failed", "posted"}, timeout=60)
    assert rec.state.value == "failed" and rec.error_code == "too_long", (rec.status, rec.error_message)
    reply = await fake.one_reply(CHANNEL, event["ts"])
    return reply.text


async def test_a_ten_hour_file_is_refused_from_its_header_before_any_upload(world):
    fake, db, bot, proxy = world
    f = fake.add_file("all-day.wav", "audio/wav", ten_hours_of_low_rate_audio())
    text = await refused(fake, db, bot, f)
    assert text == f"Could not identify speakers in all-day.wav: {TOO_LONG}", text
    assert fake.downloads == [f.id], "the header is read from the downloaded file"
    assert proxy.calls == [], f"the engine was called: {sorted(set(proxy.calls))[:4]}"


async def test_a_ten_hour_file_whose_header_says_one_minute_is_refused_before_any_upload(world):
    fake, db, bot, proxy = world
    data = ten_hours_that_say_one_minute()
    with av.open(io.BytesIO(data)) as probe:  # what a header check alone would have let through
        assert probe.duration / 1e6 == 60
    f = fake.add_file("standup.mov", "video/quicktime", data)
    text = await refused(fake, db, bot, f)
    assert text == ("Could not identify speakers in standup.mov: The recording is longer than 4 h; recordings can be "
                    "at most 4 h."), text
    assert proxy.calls == [], f"the engine was called: {sorted(set(proxy.calls))[:4]}"


async def test_slacks_stated_duration_refuses_before_the_download(world):
    fake, db, bot, proxy = world
    short = io.BytesIO()
    with wave.open(short, "wb") as w:  # what the bytes hold does not matter: Slack's word comes first
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * 16000)
    f = fake.add_file("huddle.m4a", "audio/mp4", short.getvalue())
    f.duration_ms = TEN_HOURS_S * 1000
    text = await refused(fake, db, bot, f)
    assert text == f"Could not identify speakers in huddle.m4a: {TOO_LONG}", text
    assert fake.downloads == [], "nothing is downloaded once Slack says the recording is too long"
    assert proxy.calls == [], f"the engine was called: {sorted(set(proxy.calls))[:4]}"
    assert (await recording_for(db, f.id)).duration is None
