"""Real speech end to end: a 26 s recording of two enrolled readers taking turns, shared through the real
endpoint, diarized and identified by the embedded engine, recognised by the real Whisper worker process; the
transcript file in its thread gives each turn to the right person."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from storage.thread import TRANSCRIPT, get_output
from testbed.fake_slack import BOT_USER_ID
from tests.slack_e2e_support import (
    concat,
    enroll_readers,
    slack_world,
    wait_status,
    wav_bytes,
)

pytestmark = pytest.mark.speech

CHANNEL = "C0001"
READERS = {"U1688": ("1688", "Ann"), "U1998": ("1998", "Bob")}
TURNS = [("1688", 3), ("1998", 3), ("1688", 4), ("1998", 6)]  # 23 s of speech, 0.8 s pauses
TURN_LINE = re.compile(r"^\*\*(\d+:\d\d:\d\d) (.+?):\*\* (.+)$", re.MULTILINE)


async def test_a_recording_gets_a_transcript_whose_turns_carry_the_right_names(local_engine, tmp_path: Path):
    async with slack_world(local_engine, tmp_path, transcript=True, transcript_language="en") as (fake, db, bot):
        fake.members[CHANNEL] = [*READERS, BOT_USER_ID]
        fake.users |= {user: name for user, (_, name) in READERS.items()}
        await enroll_readers(bot.services, {user: reader for user, (reader, _) in READERS.items()}, tmp_path)
        audio = concat(TURNS, pause=0.8)
        assert len(audio) / 16000 <= 30
        f = fake.add_file("sync.wav", "audio/wav", wav_bytes(audio))
        event = bot.share_event(f)
        assert (await bot.event(event)).status == 200
        rec = await wait_status(fake, db, f.id, {"posted", "failed"}, timeout=600)
        assert rec.state.value == "posted", rec.error_message
        transcript = await get_output(db, rec.id, TRANSCRIPT)
        assert transcript.error is None and transcript.file_id

        md = fake.files[transcript.file_id].data.decode()
        turns = TURN_LINE.findall(md)
        assert [name for _, name, _ in turns] == ["Ann", "Bob", "Ann", "Bob"], md
        assert all(len(text.split()) >= 5 for _, _, text in turns), md
        reply = await fake.one_reply(CHANNEL, event["ts"])
        assert "sync-transcript.md" in str(reply.blocks)
