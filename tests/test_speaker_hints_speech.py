"""The speaker count a message states steers the real embedded engine on real speech: the same three-reader
recording shared twice through the real endpoint (signed events, the fake Slack Web API, a real SQLite file,
nobody enrolled, so diarize-only jobs), once without a count and once saying "we were two", gets a summary of
three speakers and one of two, the second saying the count came from the message."""
from __future__ import annotations

import pytest

from tests.slack_e2e_support import concat, slack_world, wait_status, wav_bytes

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.speech]
CHANNEL = "C0001"


async def test_the_count_in_the_message_is_the_count_the_local_engine_finds(local_engine, tmp_path):
    audio = wav_bytes(concat([(r, i) for i in (2, 3) for r in ("1688", "1998", "2033")], pause=0.5))
    async with slack_world(local_engine, tmp_path) as (fake, db, bot):
        fake.members[CHANNEL] = ["U0", "UBOT"]
        contexts = {}
        for text in ("Design review", "Design review, we were two"):
            f = fake.add_file("review.wav", "audio/wav", audio)
            event = bot.share_event(f) | {"text": text}
            assert (await bot.event(event, event_id=f"Ev-{f.id}")).status == 200
            rec = await wait_status(fake, db, f.id, {"posted", "failed"})
            assert rec.state.value == "posted", rec.error_message
            summary = await fake.one_reply(CHANNEL, rec.message_ts)
            contexts[text] = [b["elements"][0]["text"] for b in summary.blocks if b["type"] == "context"]
    plain, hinted = contexts.values()
    assert " · 3 speakers · " in plain[0] and not [c for c in plain if c.startswith("Speaker count")]
    assert " · 2 speakers · " in hinted[0] and "Speaker count from the message: 2" in hinted
