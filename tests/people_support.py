"""Shared pieces of the data-protection tests: a person enrolled, and a finished recording naming them whose
summary and chart are in the channel, as a job leaves them."""
from __future__ import annotations

import itertools

from slack_sdk.web.async_client import AsyncWebClient

from bot.schema import DiarizationSegment, IdentificationSegment, IdentifyOutput, SpeakerMatch
from storage.database import Database
from testbed.fake_slack import TEAM_ID

CHANNEL, UPLOADER = "C0001", "UUPLOADER"
_files = itertools.count(1)


def output(matched: str) -> dict:
    """SPEAKER_00 matched to `matched` by voiceprint, SPEAKER_01 unknown (both compared with `matched`)."""
    turns = [("SPEAKER_00", 0.0, 6.0), ("SPEAKER_01", 6.0, 10.0), ("SPEAKER_00", 10.0, 14.0)]
    match = {"SPEAKER_00": matched, "SPEAKER_01": None}
    return IdentifyOutput(
        diarization=[DiarizationSegment(speaker=s, start=a, end=b) for s, a, b in turns],
        identification=[IdentificationSegment(speaker=match[s] or s, start=a, end=b, diarization_speaker=s,
                                              match=match[s]) for s, a, b in turns],
        voiceprints=[SpeakerMatch(speaker="SPEAKER_00", match=matched, confidence={matched: 91.0}),
                     SpeakerMatch(speaker="SPEAKER_01", match=None, confidence={matched: 12.0})],
        duration=14.0).wire()


async def enrolled(db: Database, user: str, *, engine: str = "local", voiceprint: str = "vp",
                   consent_text: str | None = None) -> None:
    from storage.models import utcnow
    from storage.voiceprints import upsert_voiceprint

    await upsert_voiceprint(db, team_id=TEAM_ID, user_id=user, engine=engine, model_id="m", voiceprint=voiceprint,
                            consent_at=utcnow(), clip_duration=5.0, consent_text=consent_text)


async def posted(db: Database, client: AsyncWebClient, matched: str, claimed_by: str | None = None
                 ) -> tuple[int, str]:
    """A finished recording whose summary and chart are in the channel; returns its id and the summary's ts.
    With `claimed_by`, that person claimed SPEAKER_01 ("This is me")."""
    from bot.services.summaries import summary_message
    from storage.recordings import (
        claim_next,
        complete,
        enqueue_recording,
        get_recording,
        mark_posted,
    )
    from storage.thread import chart_posted, set_relabel, start_chart

    rec, _ = await enqueue_recording(db, team_id=TEAM_ID, channel_id=CHANNEL, file_id=f"FPEOPLE{next(_files)}",
                                     file_name="standup.wav", uploader_id=UPLOADER, message_ts="1700000000.000100",
                                     engine="local")
    assert (await claim_next(db, "test", 60)).id == rec.id
    assert await complete(db, rec.id, "test", output(matched), 14.0)
    chart = await client.files_upload_v2(channel=CHANNEL, thread_ts=rec.message_ts, content=b"png",
                                         filename="timeline.png")
    assert await start_chart(db, rec.id, "test")
    assert await chart_posted(db, rec.id, "test", chart["files"][0]["id"], 0)
    if claimed_by:
        await set_relabel(db, rec.id, "SPEAKER_01", claimed_by, actor_id=claimed_by)
    msg = summary_message(await get_recording(db, rec.id), transcript_on=False)
    post = await client.chat_postMessage(channel=CHANNEL, thread_ts=rec.message_ts, text=msg.text, blocks=msg.blocks)
    assert await mark_posted(db, rec.id, "test", post["ts"])
    return rec.id, post["ts"]
