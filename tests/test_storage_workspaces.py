"""Installations, uninstall purges, OAuth states and retention, on both databases."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import select

from storage.database import Database
from storage.models import AuditAction, AuditEvent, RecordingStatus, utcnow
from storage.recordings import claim_next, complete, enqueue_recording, get_recording, mark_posted
from storage.retention import purge_expired
from storage.voiceprints import get_voiceprint, upsert_voiceprint
from storage.workspaces import (
    OrgWideInstall,
    consume_state,
    get_workspace,
    issue_state,
    purge_workspace,
    save_workspace,
)

RESULT = {"diarization": [{"speaker": "SPEAKER_00", "start": 0.0, "end": 1.0}]}


async def finished_recording(db: Database, file_id: str, team_id: str = "T1", *, post: bool = True) -> int:
    rec, _ = await enqueue_recording(db, team_id=team_id, channel_id="C", file_id=file_id, file_name="a.wav",
                                     uploader_id="U1", message_ts="1.1",
                                     engine="local")
    claimed = await claim_next(db, "w", 60)
    assert claimed.id == rec.id
    await complete(db, rec.id, "w", RESULT, 1.0)
    if post:
        await mark_posted(db, rec.id, "w", "2.2")
    return rec.id


async def audit_actions(db: Database) -> list[AuditEvent]:
    async with db.session() as s:
        return list((await s.exec(select(AuditEvent).order_by(AuditEvent.id))).all())


async def test_save_update_and_find_workspaces(db: Database):
    ws = await save_workspace(db, team_id="T1", bot_user_id="UBOT", bot_id="B1", bot_token="xoxb-1",
                              bot_scopes="chat:write,files:read", installer_user_id="U1")
    assert ws.id and ws.installed_at.utcoffset() == timedelta(0)
    assert "xoxb" not in repr(ws)
    again = await save_workspace(db, team_id="T1", bot_token="xoxb-2", bot_refresh_token="xoxe-1",
                                 bot_token_expires_at=utcnow() + timedelta(hours=12))
    assert again.id == ws.id
    found = await get_workspace(db, "T1")
    assert found.bot_token == "xoxb-2" and found.bot_user_id == "UBOT" and found.bot_token_expires_at
    assert await get_workspace(db, "T9") is None
    with pytest.raises(ValueError, match="unknown workspace fields: colour"):
        await save_workspace(db, team_id="T1", colour="red")
    with pytest.raises(ValueError, match="needs a team_id"):
        await save_workspace(db, bot_token="x")


async def test_an_org_wide_install_is_never_stored_and_a_grid_workspace_is_its_own(db: Database):
    with pytest.raises(OrgWideInstall):
        await save_workspace(db, enterprise_id="E1", is_enterprise_install=True, bot_token="xoxb-org")
    with pytest.raises(OrgWideInstall):
        await save_workspace(db, team_id="T5", enterprise_id="E1", is_enterprise_install=True, bot_token="xoxb-org")
    await save_workspace(db, team_id="T5", enterprise_id="E1", bot_token="xoxb-team")  # one workspace of the org
    assert (await get_workspace(db, "T5", "E1")).bot_token == "xoxb-team"
    assert await get_workspace(db, "T6", "E1") is None and await get_workspace(db, None, "E1") is None


async def test_uninstall_purges_tokens_voiceprints_results_and_jobs(db: Database):
    await save_workspace(db, team_id="T1", bot_token="xoxb-1", bot_refresh_token="r")
    await save_workspace(db, team_id="T2", bot_token="xoxb-2")
    for team in ("T1", "T2"):
        await upsert_voiceprint(db, team_id=team, user_id="U1", engine="local", model_id="m", voiceprint="v",
                                consent_at=utcnow(), clip_duration=5)
    posted = await finished_recording(db, "F1")
    other_team = await finished_recording(db, "F2", team_id="T2")
    queued, _ = await enqueue_recording(db, team_id="T1", channel_id="C", file_id="F3", file_name="b.wav",
                                        uploader_id=None, message_ts=None, engine="local")

    counts = await purge_workspace(db, "T1")
    assert counts == {"workspaces": 1, "voiceprints": 1, "cancelled": 1, "results": 1}
    assert await get_workspace(db, "T1") is None
    gone = await get_workspace(db, "T1", include_uninstalled=True)
    assert gone.bot_token is None and gone.bot_refresh_token is None and gone.uninstalled_at
    assert await get_voiceprint(db, "T1", "U1") is None and await get_voiceprint(db, "T2", "U1")
    assert (await get_recording(db, posted)).result is None
    assert (await get_recording(db, other_team)).result == RESULT
    stopped = await get_recording(db, queued.id)
    assert stopped.status == RecordingStatus.failed and stopped.error_code == "app_uninstalled"
    last = (await audit_actions(db))[-1]
    assert last.action == AuditAction.uninstall and last.detail["voiceprints"] == 1

    reinstalled = await save_workspace(db, team_id="T1", bot_token="xoxb-3")
    assert reinstalled.uninstalled_at is None and (await get_workspace(db, "T1")).bot_token == "xoxb-3"


async def test_oauth_state_is_single_use_and_expires(db: Database):
    state = await issue_state(db, ttl_s=600)
    assert len(state) >= 32
    assert await consume_state(db, state)
    assert not await consume_state(db, state)
    assert not await consume_state(db, "never-issued")
    assert not await consume_state(db, "")
    short = await issue_state(db, ttl_s=1)
    await asyncio.sleep(1.1)
    assert not await consume_state(db, short)


async def test_retention_clears_old_results_and_audit_rows(db: Database):
    old = await finished_recording(db, "F1")
    await upsert_voiceprint(db, team_id="T1", user_id="U1", engine="local", model_id="m", voiceprint="v",
                            consent_at=utcnow(), clip_duration=5)
    assert await purge_expired(db, result_days=30, audit_days=365) == {"results": 0, "audit_events": 0}
    counts = await purge_expired(db, result_days=30, audit_days=365, now=utcnow() + timedelta(days=31))
    assert counts == {"results": 1, "audit_events": 0}
    rec = await get_recording(db, old)
    assert rec.result is None and rec.relabels is None and rec.status == RecordingStatus.posted
    counts = await purge_expired(db, result_days=30, audit_days=365, now=utcnow() + timedelta(days=366))
    assert counts == {"results": 0, "audit_events": 3}, "enrol + two purge rows; this run's own row stays"
    rows = await audit_actions(db)
    assert [r.action for r in rows] == [AuditAction.purge] and rows[0].detail["audit_events"] == 3
    with pytest.raises(ValueError, match="at least one day"):
        await purge_expired(db, result_days=0, audit_days=1)
