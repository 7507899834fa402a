"""The voiceprint string: opaque to its holders, versioned so a foreign one is refused, never mis-compared.

Layout (then URL-safe base64 without padding, ~530 characters):
    b"VID" | format version (1 byte) | len + engine id | len + model id | dim (2 bytes) | float16 vector
float16 keeps the cosine similarity within 1e-3 of the float32 one, and halves the size.
"""
from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

import numpy as np

from bot.errors import VoiceprintError

MAGIC = b"VID"
FORMAT_VERSION = 1
ENGINE_ID = "voiceid-local"
_MAGIC_TEXT = base64.urlsafe_b64encode(MAGIC).decode()  # how every string we make begins


@dataclass(frozen=True)
class Voiceprint:
    engine: str
    model: str
    vector: np.ndarray  # L2-normalised float32


def encode(vector: np.ndarray, model: str, engine: str = ENGINE_ID) -> str:
    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    vec = vec / max(float(np.linalg.norm(vec)), 1e-9)
    e, m = engine.encode(), model.encode()
    raw = (MAGIC + bytes([FORMAT_VERSION, len(e)]) + e + bytes([len(m)]) + m + struct.pack("<H", len(vec))
           + vec.astype("<f2").tobytes())
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(text: str, label: str | None = None) -> Voiceprint:
    """Parse a voiceprint string; anything we did not make, or a damaged one, raises VoiceprintError naming
    the label (never a bare ValueError: the string comes from storage or a request)."""
    who = f"The voiceprint for {label}" if label else "The voiceprint"
    damaged = VoiceprintError(f"{who} is damaged (truncated or altered); enroll the person again.")
    if not isinstance(text, str):
        raise damaged
    raw = _unbase64(text.strip())
    if raw is None and text.strip().startswith(_MAGIC_TEXT):
        raise damaged
    if raw is None or not raw.startswith(MAGIC):
        raise VoiceprintError(f"{who} was not made by this engine (it may come from pyannoteAI or another "
                              "service); enroll the person again here.")
    if len(raw) > len(MAGIC) and raw[len(MAGIC)] != FORMAT_VERSION:
        raise VoiceprintError(f"{who} uses format version {raw[len(MAGIC)]}; this engine reads version "
                              f"{FORMAT_VERSION}. Enroll the person again.")
    try:
        engine, model, dim, body = _fields(raw)
    except (IndexError, struct.error, UnicodeDecodeError):
        raise damaged from None
    if dim == 0 or len(body) != 2 * dim:
        raise damaged
    vec = np.frombuffer(body, dtype="<f2").astype(np.float32)
    if not np.all(np.isfinite(vec)):
        raise damaged
    return Voiceprint(engine, model, vec / max(float(np.linalg.norm(vec)), 1e-9))


def _unbase64(text: str) -> bytes | None:
    """URL-safe base64 without padding → bytes; None when it is not (an impossible length, stray characters)."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None


def _fields(raw: bytes) -> tuple[str, str, int, bytes]:
    """(engine, model, dim, vector bytes) after the magic and version; IndexError/struct.error when cut short."""
    pos = len(MAGIC) + 1
    e_len = raw[pos]
    engine = raw[pos + 1:pos + 1 + e_len].decode()
    pos += 1 + e_len
    m_len = raw[pos]
    model = raw[pos + 1:pos + 1 + m_len].decode()
    pos += 1 + m_len
    (dim,) = struct.unpack("<H", raw[pos:pos + 2])
    return engine, model, dim, raw[pos + 2:]


def decode_compatible(text: str, model: str, label: str | None = None, engine: str = ENGINE_ID) -> np.ndarray:
    """The vector of a voiceprint made by this engine and model; otherwise a clear VoiceprintError."""
    vp = decode(text, label)
    who = f"The voiceprint for {label}" if label else "The voiceprint"
    if vp.engine != engine or vp.model != model:
        raise VoiceprintError(f"{who} was made by {vp.engine} with model {vp.model}; this engine uses "
                              f"{engine} with model {model}, so they cannot be compared. Enroll the person again.")
    return vp.vector
