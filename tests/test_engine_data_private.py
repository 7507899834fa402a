"""The engine server's data folders hold people's audio while jobs run: readable by its owner only, also when
the folders already existed with looser modes (the default umask leaves new folders world-readable)."""
from __future__ import annotations

import stat

from bot.engine_server.store import ServerStore


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_media_and_job_folders_are_owner_only(tmp_path):
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    for sub in ("jobs", "media"):
        (existing / sub).mkdir(parents=True)
        (existing / sub).chmod(0o755)
    for data_dir in (fresh, existing):
        ServerStore(data_dir)
        assert {sub: mode(data_dir / sub) for sub in ("jobs", "media")} == {"jobs": 0o700, "media": 0o700}
    assert mode(fresh) == 0o700
