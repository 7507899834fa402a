"""Voiceprints on both databases: up to three per person per engine, each under a name, replaced by name on
re-enrol, an opaque label per voiceprint mapped back to its person, real delete (all or one name), audited."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import func, select

from storage.database import Database
from storage.models import AuditAction, AuditEvent, Voiceprint, utcnow
from storage.voiceprints import (
    EnrollmentCancelled,
    TooManyVoiceprints,
    delete_voiceprints,
    deletion_generation,
    get_voiceprint,
    list_voiceprints,
    owners_of_labels,
    upsert_voiceprint,
    voiceprints_for_users,
)


async def enrol(db: Database, user_id: str = "U1", engine: str = "local", voiceprint: str = "vp-1",
                team_id: str = "T1", name: str = "default", **kw) -> tuple[Voiceprint, bool]:
    return await upsert_voiceprint(db, team_id=team_id, user_id=user_id, engine=engine, model_id=f"{engine}-model",
                                   voiceprint=voiceprint, consent_at=utcnow(), clip_duration=12.5, name=name, **kw)


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
    assert events[0].detail == {"engine": "local", "model_id": "local-model", "clip_duration": 12.5,
                                "voiceprint_id": first.id}
    assert "vp-2" not in repr(stored)
    assert stored.label == first.label, "replacing keeps the voiceprint's label"


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
    assert len(deletes) == 1 and deletes[0].detail == {"engines": ["local", "pyannoteai"], "count": 2, "all": True}
    assert deletes[0].target_id == "U1" and deletes[0].actor_id == "U1"


async def test_voiceprints_for_users_keeps_order_engine_team_and_limit(db: Database):
    for user in ("U1", "U2", "U3", "U4"):
        await enrol(db, user_id=user)
    await enrol(db, user_id="U3", name="phone")
    await enrol(db, user_id="U5", engine="pyannoteai")
    await enrol(db, user_id="U6", team_id="T2")
    found = await voiceprints_for_users(db, "T1", ["U3", "U5", "U6", "U1", "U3", "U2"], "local")
    assert [(v.user_id, v.name) for v in found] == [("U3", "phone"), ("U3", "default"), ("U1", "default"),
                                                    ("U2", "default")], "every voiceprint, each person's newest first"
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


async def test_several_named_voiceprints_up_to_three_each_with_its_consent_and_opaque_label(db: Database):
    first, _ = await enrol(db, name="default", consent_text="agreed once")
    phone, replaced = await enrol(db, name="phone", voiceprint="vp-phone", consent_text="agreed for the phone")
    assert not replaced and phone.id != first.id
    await enrol(db, name="headset", voiceprint="vp-headset")
    await enrol(db, name="phone", engine="pyannoteai")  # another engine has its own three
    with pytest.raises(TooManyVoiceprints) as refused:
        await enrol(db, name="laptop")
    assert refused.value.names == ["default", "phone", "headset"]
    again, replaced = await enrol(db, name="phone", voiceprint="vp-phone-2")
    assert replaced and again.id == phone.id and again.label == phone.label
    mine = await list_voiceprints(db, "T1", "U1", "local")
    assert [(v.name, v.voiceprint) for v in mine] == [("default", "vp-1"), ("phone", "vp-phone-2"),
                                                      ("headset", "vp-headset")]
    assert mine[0].consent_text == "agreed once", "each voiceprint keeps the consent it was made under"
    labels = [v.label for v in await list_voiceprints(db, "T1", "U1")]
    assert len(set(labels)) == 4 and all(lab.startswith("vp") and "U1" not in lab for lab in labels)
    assert await owners_of_labels(db, "T1", [*labels, "vp-gone", "U1"]) == dict.fromkeys(labels, "U1")
    assert await owners_of_labels(db, "T2", labels) == {}, "labels map back only within their workspace"


async def test_deleting_one_name_keeps_the_others_and_wins_over_enrollments_in_flight(db: Database):
    await enrol(db, name="default")
    phone, _ = await enrol(db, name="phone")
    await enrol(db, name="phone", engine="pyannoteai")
    started = await deletion_generation(db, "T1", "U1")
    assert await delete_voiceprints(db, "T1", "U1", actor_id="U1", name="phone") == 2
    assert [v.name for v in await list_voiceprints(db, "T1", "U1")] == ["default"]
    assert await owners_of_labels(db, "T1", [phone.label]) == {}, "a deleted voiceprint's label names nobody"
    with pytest.raises(EnrollmentCancelled):
        await enrol(db, name="headset", generation=started)
    assert await delete_voiceprints(db, "T1", "U1", actor_id="U1", name="nothing") == 0
    [one] = [e for e in await audit_rows(db) if e.action == AuditAction.delete]
    assert one.detail == {"engines": ["local", "pyannoteai"], "count": 2, "all": False}
    assert "phone" not in str([e.detail for e in await audit_rows(db)]), "the audit log keeps no name typed"
    again, _ = await enrol(db, name="phone")
    assert again.label != phone.label, "a label is never reused"


async def test_concurrent_enrolments_of_new_names_never_exceed_three(db: Database):
    results = await asyncio.gather(*(enrol(db, name=f"mic {i}") for i in range(6)), return_exceptions=True)
    assert sum(isinstance(r, TooManyVoiceprints) for r in results) == 3
    assert len(await list_voiceprints(db, "T1", "U1")) == 3


async def test_a_name_is_required_and_short(db: Database):
    with pytest.raises(ValueError, match="without name"):
        await enrol(db, name="")
    with pytest.raises(ValueError, match="at most 24"):
        await enrol(db, name="x" * 25)
