"""Key rotation: every sealed value re-encrypted with the database's current (first) key, in one transaction."""
from __future__ import annotations

from sqlalchemy import update
from sqlmodel import select

from storage.crypto import SealError
from storage.database import Database
from storage.models import Voiceprint, Workspace

SEALED_COLUMNS = {Voiceprint: ("voiceprint",), Workspace: ("bot_token", "bot_refresh_token")}


async def reencrypt_all(db: Database) -> dict[str, int]:
    """Reads each row with any configured key (or as legacy plain text) and writes it back sealed with the
    first key; returns the rows rewritten per table. Afterwards the older keys can be retired."""
    if not db.keyring.encrypts:
        raise SealError("re-encryption needs an encryption key")
    counts: dict[str, int] = {}
    async with db.session(immediate=True) as s:
        for model, columns in SEALED_COLUMNS.items():
            rows = (await s.exec(select(model.id, *(getattr(model, c) for c in columns)))).all()
            for row_id, *values in rows:
                stmt = update(model).where(model.id == row_id).values(dict(zip(columns, values, strict=True)))
                await s.exec(stmt.execution_options(synchronize_session=False))
            counts[model.__tablename__] = len(rows)
        await s.commit()
    return counts
