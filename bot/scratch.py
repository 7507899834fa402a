"""Temporary audio lives under VAR_DIR/tmp, readable by its owner only, never in the shared system temp folder.

Each process works in `VAR_DIR/tmp/p<pid>`, so a starting process can sweep what crashed processes left
behind without touching the files of another process that is still running on the same VAR_DIR.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_OWNED = re.compile(r"^p(\d+)$")


def scratch_root(var_dir: Path) -> Path:
    return Path(var_dir) / "tmp"


def scratch_dir(var_dir: Path) -> Path:
    """This process's folder for temporary audio (created 0700)."""
    path = scratch_root(var_dir) / f"p{os.getpid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def temporary_dir(var_dir: Path, prefix: str) -> tempfile.TemporaryDirectory:
    """A temporary directory for one download or clip, deleted when its `with` block ends."""
    return tempfile.TemporaryDirectory(prefix=prefix, dir=scratch_dir(var_dir))


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(pid: int) -> bool:
    # This process is only starting: anything under its own pid is from an earlier one.
    return pid != os.getpid() and pid_alive(pid)


def sweep_scratch(var_dir: Path) -> int:
    """At start: delete what processes that are no longer running left under VAR_DIR/tmp; returns how many."""
    root = scratch_root(var_dir)
    if not root.is_dir():
        return 0
    swept = 0
    for entry in root.iterdir():
        owner = _OWNED.match(entry.name)
        if owner and _alive(int(owner.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        swept += 1
    if swept:
        log.info("deleted %d temporary audio folder(s) left behind by a crash under %s", swept, root)
    return swept
