"""Alembic environment: runs on a connection handed over by `storage.migrate`, or opens its own.

`storage.migrate` builds the Alembic config in code and passes an open connection in
`config.attributes["connection"]`, so no alembic.ini and no particular working directory are needed.
"""
from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from storage.models import metadata

config = context.config


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine(url: str) -> None:
    from storage.database import Database

    db = Database(url)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(run_on)
    finally:
        await db.dispose()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("No database URL: run migrations with `python -m bot migrate` or storage.migrate.upgrade(url).")
    if context.is_offline_mode():
        from storage.database import parse_database_url

        context.configure(url=parse_database_url(url), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(run_with_own_engine(url))


main()
