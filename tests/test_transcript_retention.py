"""Transcripts are results: stored inside the recording's result, so retention and uninstall clear them too."""
from __future__ import annotations

from datetime import timedelta

from bot.schema import IdentifyOutput
from storage.database import Database
from storage.models import utcnow
from storage.recordings import claim_next, complete, enqueue_recording, get_recording
from storage.retention import purge_expired
from storage.workspaces import purge_workspace

RESULT = IdentifyOutput.model_validate({
    "diarization": [{"speaker": "SPEAKER_00", "start": 0.0, "end": 2.0}],
    "turnLevelTranscription": [{"speaker": "SPEAKER_00", "start": 0.1, "end": 1.0, "text": "Secret plans."}],
    "wordLevelTranscription": [{"speaker": "SPEAKER_00", "start": 0.1, "end": 0.5, "text": "Secret"},
                               {"speaker": "SPEAKER_00", "start": 0.6, "end": 1.0, "text": "plans."}],
}).wire()


async def transcribed_recording(db: Database, team_id: str, file_id: str) -> int:
    rec, _ = await enqueue_recording(db, team_id=team_id, channel_id="C", file_id=file_id, file_name="a.wav",
                                     uploader_id="U1", message_ts="1.1",
                                     engine="local")
    assert (await claim_next(db, "w", 60)).id == rec.id
    await complete(db, rec.id, "w", RESULT, 2.0)
    stored = IdentifyOutput.model_validate((await get_recording(db, rec.id)).result)
    assert stored.turn_level_transcription[0].text == "Secret plans."
    return rec.id


async def test_retention_and_uninstall_clear_transcripts(db: Database):
    old = await transcribed_recording(db, "T1", "F1")
    counts = await purge_expired(db, result_days=30, audit_days=365, now=utcnow() + timedelta(days=31))
    assert counts["results"] == 1 and (await get_recording(db, old)).result is None

    other = await transcribed_recording(db, "T2", "F2")
    assert (await purge_workspace(db, "T2"))["results"] == 1
    assert (await get_recording(db, other)).result is None
