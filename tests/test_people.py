"""A person's name out of stored results, on both databases: the redaction itself (every place an id can be in
an identify output), and the two writes that could bring a deleted person's name back — a recording job that
sent their voiceprint to the engine before the delete and stores its result after it, and a transcript saved
from a result read before the delete."""
from __future__ import annotations

import json

from storage.database import Database
from storage.models import utcnow
from storage.recordings import claim_next, complete, enqueue_recording, get_recording
from storage.retention import holds, redact, redact_recording, redact_relabels, withheld
from storage.thread import save_transcript
from storage.voiceprints import delete_voiceprints, get_voiceprint, upsert_voiceprint

GONE, STAYS = "UGONE", "USTAYS"


def result() -> dict:
    """SPEAKER_00 matched to GONE, SPEAKER_01 to STAYS, both compared with both; a transcript whose engine named
    the speaker by label (pyannoteAI's transcription does)."""
    return {
        "diarization": [{"speaker": "SPEAKER_00", "start": 0.0, "end": 3.0},
                        {"speaker": "SPEAKER_01", "start": 3.0, "end": 5.0}],
        "identification": [
            {"speaker": GONE, "start": 0.0, "end": 3.0, "diarizationSpeaker": "SPEAKER_00", "match": GONE},
            {"speaker": STAYS, "start": 3.0, "end": 5.0, "diarizationSpeaker": "SPEAKER_01", "match": STAYS}],
        "voiceprints": [{"speaker": "SPEAKER_00", "match": GONE, "confidence": {GONE: 91.0, STAYS: 10.0}},
                        {"speaker": "SPEAKER_01", "match": STAYS, "confidence": {GONE: 12.0, STAYS: 88.0}}],
        "turnLevelTranscription": [{"speaker": GONE, "start": 0.0, "end": 3.0, "text": "hello"}],
        "duration": 5.0,
    }


def test_redact_names_the_person_nowhere_and_keeps_everything_else():
    before = result()
    after = redact(before, GONE)
    assert not holds(after, GONE) and GONE not in json.dumps(after)
    assert before == result(), "the stored value is not changed in place"
    assert after["diarization"] == before["diarization"]
    assert after["voiceprints"][0] == {"speaker": "SPEAKER_00", "match": None, "confidence": {STAYS: 10.0}}
    assert after["voiceprints"][1] == {"speaker": "SPEAKER_01", "match": STAYS, "confidence": {STAYS: 88.0}}
    assert after["identification"][0] | {} == {"speaker": "SPEAKER_00", "start": 0.0, "end": 3.0,
                                              "diarizationSpeaker": "SPEAKER_00", "match": None}
    assert after["identification"][1] == before["identification"][1]
    assert after["turnLevelTranscription"][0]["speaker"] == "SPEAKER_00"
    assert redact_relabels({"SPEAKER_01": GONE, "SPEAKER_02": STAYS}, GONE) == {"SPEAKER_01": None,
                                                                              "SPEAKER_02": STAYS}
    assert redact({"warning": GONE, "extra": {GONE: [GONE]}}, GONE) == {"warning": None, "extra": {}}


async def _running(db: Database, file_id: str):
    rec, _ = await enqueue_recording(db, team_id="T1", channel_id="C1", file_id=file_id, file_name="standup.wav",
                                     uploader_id=STAYS, message_ts="1.1", engine="local")
    assert (await claim_next(db, "w", 60)).id == rec.id
    return rec


async def _enroll(db: Database, user_id: str) -> None:
    await upsert_voiceprint(db, team_id="T1", user_id=user_id, engine="local", model_id="m", voiceprint="vp",
                            consent_at=utcnow(), clip_duration=5.0)


async def test_a_result_stored_after_the_persons_delete_does_not_name_them(db: Database):
    """The job read GONE's voiceprint and sent it to the engine; GONE deleted their data while the engine ran.
    Failed before `complete` withheld them: the result stored named GONE."""
    for user in (GONE, STAYS):
        await _enroll(db, user)
    rec = await _running(db, "F1")
    assert await delete_voiceprints(db, "T1", GONE, actor_id=GONE) == 1
    assert await complete(db, rec.id, "w", result(), 5.0)
    stored = (await get_recording(db, rec.id)).result
    assert not holds(stored, GONE)
    assert stored["voiceprints"][1]["match"] == STAYS, "everyone else is still named"


async def test_a_delete_before_the_job_was_queued_withholds_nobody(db: Database):
    """Someone who deleted and enrolled again before the recording was shared is named as usual."""
    await _enroll(db, GONE)
    await delete_voiceprints(db, "T1", GONE, actor_id=GONE)
    await _enroll(db, GONE)
    rec = await _running(db, "F2")
    assert await complete(db, rec.id, "w", result(), 5.0)
    assert (await get_recording(db, rec.id)).result["voiceprints"][0]["match"] == GONE
    async with db.session() as s:
        assert await withheld(s, "T1", result(), utcnow()) == result(), "no delete since now"


async def test_a_transcript_saved_after_a_redaction_does_not_bring_the_name_back(db: Database):
    """Recognition read the result, the person's name was taken out meanwhile, then the words were saved with
    the result read before. Failed before `save_transcript` took only the words: the name came back."""
    rec = await _running(db, "F3")
    assert await complete(db, rec.id, "w", result(), 5.0)
    read_before = (await get_recording(db, rec.id)).result
    redacted = await redact_recording(db, rec.id, GONE)
    assert redacted is not None and redacted.relabel_seq == rec.relabel_seq + 1
    words = [{"speaker": "SPEAKER_01", "start": 3.0, "end": 3.5, "text": "bye"}]  # as diarization labels
    assert await save_transcript(db, rec.id, "w", {**read_before, "turnLevelTranscription": words,
                                                   "wordLevelTranscription": words})
    stored = (await get_recording(db, rec.id)).result
    assert not holds(stored, GONE) and stored["wordLevelTranscription"] == words
    assert await redact_recording(db, rec.id, GONE) is None, "nothing left to take out"
    assert not await save_transcript(db, rec.id, "someone-else", stored), "only under the lease"


async def test_the_consent_text_is_kept_with_the_voiceprint_and_replaced_with_it(db: Database):
    for text in ("I agree, first wording", "I agree, second wording"):
        await upsert_voiceprint(db, team_id="T1", user_id=GONE, engine="local", model_id="m", voiceprint="vp",
                                consent_at=utcnow(), clip_duration=5.0, consent_text=text)
        assert (await get_voiceprint(db, "T1", GONE)).consent_text == text
