"""Persistence: SQLModel tables, the async database, migrations, job claiming and retention."""
