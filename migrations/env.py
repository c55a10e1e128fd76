"""Alembic environment: migrates schema ``scitq`` with scitq's models as the target."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from scitq.db import models
from scitq.db.migrate import MIGRATION_LOCK, engine_for

config = context.config


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        # `alembic` run by hand: the database of the scitq configuration
        from scitq.config import load_settings
        from scitq.embedded import conninfo_for

        engine = engine_for(conninfo_for(load_settings().database))
    with engine.connect() as connection:
        # One migrator at a time. A session lock, not a transaction's: a revision that adds
        # an enum value commits it on its own (op.get_context().autocommit_block()) before
        # the SQL that uses it, since PostgreSQL refuses a new value in its own transaction.
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        connection.execute(text("CREATE SCHEMA IF NOT EXISTS scitq"))
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=models.metadata,
                version_table_schema=models.SCHEMA,
                include_schemas=True,
                include_name=lambda name, type_, parent: type_ != "schema" or name == models.SCHEMA,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()


if context.is_offline_mode():
    raise SystemExit("scitq migrations run online only: use `scitq db upgrade`")
run_migrations_online()
