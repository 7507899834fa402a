"""What the test run needs from outside the repository, and what to do when it is missing.

Locally a missing dependency (the speech data beside the checkout, PostgreSQL binaries) skips the tests that
need it, with the reason. Under CI (`CI=true`) a skip would hide that those tests never ran: the run fails.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SPEECH_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPEECH_PARTS = ("librispeech", "ami")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_speech(data: Path = SPEECH_DATA) -> str | None:
    """Why the speech tests cannot run here, or None when the data is in place."""
    absent = [part for part in SPEECH_PARTS if not (data / part).is_dir()]
    if absent:
        return f"real speech not found: {', '.join(str(data / p) for p in absent)} (see ../shared/data/README.md)"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip the test with `reason`; under CI fail it instead, since CI has everything the suite needs."""
    if in_ci():
        pytest.fail(f"CI must run this test, but {reason}", pytrace=False)
    pytest.skip(reason)
