"""Voiceprints on both databases: one per person per engine, replace on re-enrol, real delete, audited."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import func, select

from storage.database import Database
from storage.models import AuditAction, AuditEvent, Voiceprint, utcnow
from storage.voiceprints import delete_voiceprints, get_voiceprint, upsert_voiceprint, voiceprints_for_users


async def enrol(db: Database, user_id: str = "U1", engine: str = "local", voiceprint: str = "vp-1",
                team_id: str = "T1") -> tuple[Voiceprint, bool]:
    return await upsert_voiceprint(db, team_id=team_id, user_id=user_id, engine=engine, model_id=f"{engine}-model",
                                   voiceprint=voiceprint, consent_at=utcnow(), clip_duration=12.5)


async def audit_rows(db: Database) -> list[AuditEvent]:
    async with db.session() as s:
        return list((await s.exec(select(AuditEvent).order_by(AuditEvent.id))).all())


async def test_enrol_replace_and_audit_without_the_voiceprint(db: Database):
    first, replaced = await enrol(db)
    assert not replaced and first.id
    second, replaced = await enrol(db, voiceprint="vp-2")
    assert replaced and second.id == first.id
    stored = await get_voiceprint(db, "T1", "U1", "local")
    assert stored.voiceprint == "vp-2" and stored.updated_at >= stored.created_at
    assert stored.consent_at.utcoffset() == timedelta(0) and stored.clip_duration == 12.5
    events = await audit_rows(db)
    assert [e.action for e in events] == [AuditAction.enroll, AuditAction.replace]
    assert all("vp-" not in str(e.detail) for e in events)
    assert events[0].detail == {"engine": "local", "model_id": "local-model", "clip_duration": 12.5}
    assert "vp-2" not in repr(stored)


async def test_one_per_engine_and_latest_when_engine_is_not_given(db: Database):
    await enrol(db, engine="local")
    await enrol(db, engine="pyannoteai", voiceprint="cloud")
    assert (await get_voiceprint(db, "T1", "U1")).engine == "pyannoteai"
    assert (await get_voiceprint(db, "T1", "U1", "local")).voiceprint == "vp-1"
    assert await get_voiceprint(db, "T2", "U1") is None


async def test_concurrent_first_enrolments_leave_one_row(db: Database):
    results = await asyncio.gather(*(enrol(db, voiceprint=f"vp-{i}") for i in range(6)))
    assert sum(not replaced for _, replaced in results) == 1
    async with db.session() as s:
        assert (await s.exec(select(func.count()).select_from(Voiceprint))).one() == 1


async def test_delete_is_real_and_audited(db: Database):
    await enrol(db, engine="local")
    await enrol(db, engine="pyannoteai")
    await enrol(db, user_id="U2")
    assert await delete_voiceprints(db, "T1", "U1", actor_id="U1") == 2
    assert await get_voiceprint(db, "T1", "U1") is None
    assert await get_voiceprint(db, "T1", "U2") is not None
    assert await delete_voiceprints(db, "T1", "U1", actor_id="U1") == 0
    deletes = [e for e in await audit_rows(db) if e.action == AuditAction.delete]
    assert len(deletes) == 1 and deletes[0].detail == {"engines": ["local", "pyannoteai"], "count": 2}
    assert deletes[0].target_id == "U1" and deletes[0].actor_id == "U1"


async def test_voiceprints_for_users_keeps_order_engine_team_and_limit(db: Database):
    for user in ("U1", "U2", "U3", "U4"):
        await enrol(db, user_id=user)
    await enrol(db, user_id="U5", engine="pyannoteai")
    await enrol(db, user_id="U6", team_id="T2")
    found = await voiceprints_for_users(db, "T1", ["U3", "U5", "U6", "U1", "U3", "U2"], "local")
    assert [v.user_id for v in found] == ["U3", "U1", "U2"]
    assert [v.user_id for v in await voiceprints_for_users(db, "T1", ["U4", "U2", "U1"], "local", limit=2)] == \
        ["U4", "U2"]
    assert await voiceprints_for_users(db, "T1", [], "local") == []
    many = [f"X{i}" for i in range(1200)] + ["U4"]
    assert [v.user_id for v in await voiceprints_for_users(db, "T1", many, "local")] == ["U4"]


async def test_bad_input_is_refused_clearly(db: Database):
    with pytest.raises(ValueError, match="without voiceprint"):
        await enrol(db, voiceprint="")
    with pytest.raises(ValueError, match="clip_duration"):
        await upsert_voiceprint(db, team_id="T", user_id="U", engine="local", model_id="m", voiceprint="v",
                                consent_at=utcnow(), clip_duration=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        await upsert_voiceprint(db, team_id="T", user_id="U", engine="local", model_id="m", voiceprint="v",
                                consent_at=utcnow().replace(tzinfo=None), clip_duration=3)
