"""The hash lock that `make run` / `make test` install from stays complete, hashed, in step with pyproject.toml
and on the CPU build of torch; pyproject.toml keeps bounded ranges for library use."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def locked() -> dict[str, tuple[Version, list[str]]]:
    """name → (pinned version, sha256 hashes), from pip's requirements format with `\\` continuations."""
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    pins: dict[str, tuple[Version, list[str]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        spec, *options = line.split(" --")
        req = Requirement(spec.strip())
        (pin,) = req.specifier
        assert pin.operator == "==", f"{line!r} is not pinned with =="
        hashes = [o.strip().removeprefix("hash=sha256:") for o in options if o.startswith("hash=sha256:")]
        pins[canonicalize_name(req.name)] = (Version(pin.version), hashes)
    return pins


def declared() -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return [Requirement(r) for r in reqs + PYPROJECT["build-system"]["requires"]]


def test_every_locked_package_is_pinned_with_a_sha256_hash():
    pins = locked()
    assert len(pins) > 50
    for name, (_, hashes) in pins.items():
        assert hashes, f"{name} has no hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_lock_has_the_cpu_build_of_torch_and_no_cuda_packages():
    pins = locked()
    assert pins["torch"][0].local == "cpu"
    assert not [n for n in pins if n.startswith(("nvidia-", "cuda-", "triton"))]


@pytest.mark.parametrize("req", declared(), ids=str)
def test_lock_satisfies_every_declared_requirement(req: Requirement):
    pins = locked()
    name = canonicalize_name(req.name)
    assert name in pins, f"{req} is missing from requirements.lock: run `make lock`"
    assert req.specifier.contains(pins[name][0], prereleases=True), (
        f"requirements.lock pins {name}=={pins[name][0]}, outside {req}: run `make lock`")


@pytest.mark.parametrize("req", [r for r in declared() if r.name not in ("setuptools", "wheel")], ids=str)
def test_declared_ranges_are_bounded(req: Requirement):
    assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), f"{req} has no upper bound"


def test_make_installs_from_the_lock_with_hashes_only():
    recipe = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r $(LOCK)" in recipe
    assert "--no-deps --no-build-isolation -e ." in recipe
    assert not re.search(r"pip install [^\n]*(torch==|'\.\[dev\]')", recipe)
