"""Voiceprints are stored under a stable engine id, not the engine's display name: the migration moves rows
stored under the old names, and renaming a display name finds them still."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bot.config import EngineKind
from bot.engines.factory import ENGINE_NAMES, engine_name, make_engine
from storage.migrate import upgrade


def test_every_engine_kind_has_an_id_and_a_name(monkeypatch):
    assert {k.value for k in ENGINE_NAMES} == {k.value for k in EngineKind}
    assert engine_name("pyannoteai") == "pyannoteAI" and engine_name("unknown") == "unknown"


def test_factory_engines_carry_their_setting_as_id():
    from bot.config import Settings

    for kind, extra in ((EngineKind.pyannoteai, {"pyannoteai_api_key": "k"}),
                        (EngineKind.server, {"engine_url": "http://127.0.0.1:9", "engine_api_key": "k"})):
        engine = make_engine(Settings(_env_file=None, engine=kind, **extra))
        assert engine.engine_id == kind.value and engine.name == ENGINE_NAMES[kind]


async def test_migration_rekeys_rows_stored_under_display_names(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    await upgrade(url, revision="0006_diarize_only")
    engine = create_async_engine(url)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        for user, name in (("U1", "pyannoteAI"), ("U2", "the engine server"), ("U3", "local")):
            await conn.execute(sa.text(
                "INSERT INTO voiceprint (team_id, user_id, engine, model_id, voiceprint, consent_at, clip_duration, "
                "created_at, updated_at) VALUES ('T1', :u, :e, 'm', 'vp', :t, 5.0, :t, :t)"), {"u": user, "e": name,
                                                                                            "t": now})
    await upgrade(url)
    async with engine.connect() as conn:
        rows = dict((await conn.execute(sa.text("SELECT user_id, engine FROM voiceprint"))).all())
    await engine.dispose()
    assert rows == {"U1": "pyannoteai", "U2": "server", "U3": "local"}
