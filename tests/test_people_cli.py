"""`python -m bot people export|delete` as the operator runs it: the real process, on a real SQLite file and on
PostgreSQL, with encrypted data, against the fake Slack Web API. The export shows what is stored (consent text and
time, the recordings naming the person, the audit rows) and never the voiceprint; the delete takes everything out,
edits the posted summary, tells the person by DM, and leaves an audit row; a second export shows what is left."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from slack_sdk.web.async_client import AsyncWebClient

from storage.database import Database
from storage.retention import holds
from testbed.fake_slack import TEAM_ID, FakeSlack
from tests import people_support as support
from tests.process_support import ROOT, child_env

PERSON, OTHER = "UPERSON", "UOTHER"
VOICEPRINT = "voiceprint-bytes-that-must-never-be-printed"
CONSENT = "I agree that Voice ID keeps a voiceprint of my voice to name me in recordings shared to my channels."


async def people(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "people", *args, cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    return proc.returncode, out.decode(), err.decode()


async def answer(env: dict[str, str], action: str) -> dict:
    code, out, err = await people(env, action, "--team", TEAM_ID, "--user", PERSON)
    assert code == 0, err
    assert VOICEPRINT not in out + err
    return json.loads(out)


@pytest.fixture
async def fake():
    slack = FakeSlack()
    await slack.start()
    yield slack
    await slack.close()


async def test_export_then_delete_then_export_through_the_real_command(db_url: str, fake: FakeSlack, tmp_path: Path):
    from sqlmodel import select

    from storage.models import AuditEvent
    from storage.voiceprints import get_voiceprint

    key = Fernet.generate_key().decode()
    db = Database(db_url, keys=[key])
    client = AsyncWebClient(token=fake.token, base_url=fake.api_url)
    try:
        await support.enrolled(db, PERSON, voiceprint=VOICEPRINT, consent_text=CONSENT)
        await support.enrolled(db, OTHER)
        rec_id, ts = await support.posted(db, client, PERSON)
        other_id, _ = await support.posted(db, client, OTHER)
        env = child_env(tmp_path, DATABASE_URL=db_url, DATA_ENCRYPTION_KEYS=key, SLACK_BOT_TOKEN=fake.token,
                        SLACK_API_URL=fake.api_url)

        exported = await answer(env, "export")

        [vp] = exported["voiceprints"]
        assert vp["consent_text"] == CONSENT and vp["consent_given_at"] and vp["enrolled_at"]
        assert vp["engine"] == "local" and vp["clip_length_seconds"] == 5.0 and "voiceprint" not in vp
        assert vp["name"] == "default" and "label" not in vp
        [named] = exported["recordings_naming_them"]
        assert named["recording_id"] == rec_id and named["file_name"] == "standup.wav"
        assert named["identified_by_voiceprint"] == [{"speaker": "SPEAKER_00", "confidence": 91.0,
                                                      "talk_time_seconds": 10.0, "they_said_not_me": False}]
        assert named["result_deleted_after"] and named["voiceprint_compared"]
        assert [e["action"] for e in exported["audit_log"]] == ["enroll"]
        assert exported["retention"]["meeting_results_days"] == 30 and "never exported" in exported["not_included"]

        deleted = await answer(env, "delete")

        assert deleted["deleted"] == {"voiceprints": 1, "enrollments_cancelled": 0, "results_redacted": 1,
                                      "identify_again_rows": 0}
        assert deleted["recordings_redacted"] == [rec_id]
        assert deleted["slack"]["summaries_updated"] == 1 and deleted["slack"]["person_notified"] == {"sent": True}
        assert await get_voiceprint(db, TEAM_ID, PERSON) is None
        rec = await db_recording(db, rec_id)
        assert not holds(rec.result, PERSON) and (await db_chart(db, rec_id)).seq == rec.relabel_seq
        assert PERSON not in str(fake.messages[(support.CHANNEL, ts)].blocks)
        assert holds((await db_recording(db, other_id)).result, OTHER), "nobody else loses their name"
        [told] = [c.params["text"] for c in fake.calls_to("chat.postMessage") if c.params["channel"] == PERSON]
        assert told.startswith("Whoever runs Voice ID for this workspace deleted the data")
        async with db.session() as s:
            [row] = (await s.exec(select(AuditEvent).where(AuditEvent.action == "erase"))).all()
        assert row.actor_id is None and row.target_id == PERSON and row.detail["via"] == "command line"

        again = await answer(env, "export")

        assert again["voiceprints"] == [] and again["recordings_naming_them"] == []
        assert again["times_voiceprints_deleted"] == 1
        assert [e["action"] for e in again["audit_log"]] == ["enroll", "delete", "erase"]
    finally:
        await db.dispose()


async def db_recording(db: Database, rec_id: int):
    from storage.recordings import get_recording

    return await get_recording(db, rec_id)


async def db_chart(db: Database, rec_id: int):
    from storage.thread import CHART, get_output

    return await get_output(db, rec_id, CHART)


@pytest.mark.parametrize("args", [["export", "--team", TEAM_ID, "--user", "u1"],
                                  ["delete", "--team", "not-a-team", "--user", PERSON]])
async def test_a_malformed_id_is_refused_with_one_line(args: list[str], tmp_path: Path):
    code, out, err = await people(child_env(tmp_path), *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "must be a Slack id" in err
