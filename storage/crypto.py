"""Encryption at rest for voiceprints, OAuth tokens and meeting content (a recording's result with its
transcript, relabels, file name and transcript link): Fernet (AES-128-CBC + HMAC-SHA256) with key rotation.

The caller hands `Database` its key ring (the first key encrypts, every key decrypts); `Sealed` columns
encrypt on the way in and decrypt on the way out, so no query or model code sees ciphertext. A stored
value carries the `SEALED_PREFIX`, so rows written before encryption was turned on still read as plain
text, and `reencrypt_all` moves every row (plain text included) to the current key.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import Dialect

SEALED_PREFIX = "fernet:"
_KEYRING_ATTR = "voiceid_keyring"  # where a Database leaves its key ring on its engine's dialect


class SealError(ValueError):
    """A key is malformed, or a stored value cannot be read with the configured keys."""


def new_key() -> str:
    return Fernet.generate_key().decode()


class KeyRing:
    """The keys for reading and writing sealed values; without keys it writes plain text (tests, tools)."""

    def __init__(self, keys: Sequence[str] = ()):
        fernets = []
        for n, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key.strip().encode()))
            except (ValueError, TypeError):
                raise SealError(f"encryption key {n} is not a Fernet key (32 url-safe base64-encoded bytes)") from None
        self._fernet = MultiFernet(fernets) if fernets else None

    @property
    def encrypts(self) -> bool:
        return self._fernet is not None

    def seal(self, value: str | None) -> str | None:
        if value is None or self._fernet is None:
            return value
        return SEALED_PREFIX + self._fernet.encrypt(value.encode()).decode()

    def open(self, value: str | None) -> str | None:
        if value is None or not value.startswith(SEALED_PREFIX):
            return value  # written before encryption was turned on
        if self._fernet is None:
            raise SealError("a stored value is encrypted but no encryption key is configured")
        try:
            return self._fernet.decrypt(value[len(SEALED_PREFIX):].encode()).decode()
        except InvalidToken:
            raise SealError("a stored value was encrypted with a key that is not configured") from None


PLAIN = KeyRing()


def attach(dialect: Dialect, keyring: KeyRing) -> None:
    """Column types only see the dialect, so the engine's dialect carries its database's key ring."""
    setattr(dialect, _KEYRING_ATTR, keyring)


def keyring_of(dialect: Dialect) -> KeyRing:
    return getattr(dialect, _KEYRING_ATTR, PLAIN)


class Sealed(sa.types.TypeDecorator):
    """TEXT encrypted with the database's key ring (the column stays TEXT, so no migration is needed)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return keyring_of(dialect).seal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return keyring_of(dialect).open(value)


class SealedString(Sealed):
    """VARCHAR(n) encrypted: a Slack token of up to about 300 characters still fits 512 once sealed."""

    impl = sa.String
    cache_ok = True


class SealedJSON(Sealed):
    """JSON encrypted as TEXT. A row written before encryption holds the JSON document itself (it cannot start
    with the prefix), so it still reads."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return super().process_bind_param(json.dumps(value, ensure_ascii=False, separators=(",", ":")), dialect)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        opened = super().process_result_value(value, dialect)
        return None if opened is None else json.loads(opened)
