"""Creating and upgrading the database schema (Alembic), and its current state.

Tables come from `scitq.db.models`; functions, views, triggers and roles from frozen SQL
files executed by each migration (the current sources live in ``scitq/sql/functions``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Engine

from scitq import sql
from scitq.db import models
from scitq.db.connection import translated

logger = logging.getLogger(__name__)

#: Advisory lock key held while migrating, so concurrent first uses migrate once.
MIGRATION_LOCK = 0x5C17_0001


def migrations_dir() -> Path:
    """The Alembic script directory: packaged in a wheel, or at the source tree's root."""
    packaged = Path(__file__).resolve().parent.parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "migrations"


def engine_for(conninfo: str) -> Engine:
    """A SQLAlchemy engine over psycopg that connects with a libpq conninfo string."""
    return create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(conninfo),
        poolclass=pool.NullPool,
    )


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conninfo: str) -> str | None:
    """The migration the database is at (None for an empty database)."""
    with translated(), engine_for(conninfo).connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table_schema": "scitq"})
        return context.get_current_revision()


def upgrade(conninfo: str, revision: str = "head") -> None:
    """Migrate the database to ``revision``."""
    logger.info("migrating database", extra={"action": "db_upgrade", "revision": revision})
    with translated():
        command.upgrade(alembic_config(engine_for(conninfo)), revision)


def ensure_current(conninfo: str) -> None:
    """Migrate the database if it is not at the head revision."""
    if current_revision(conninfo) != head_revision():
        upgrade(conninfo)


def execute_script(connection: Any, script: str) -> None:
    """Run a multi-statement SQL script through a DBAPI (psycopg) connection.

    No parameters are passed, so psycopg sends the text as is (``%`` stays literal).
    """
    raw = connection.driver_connection if hasattr(connection, "driver_connection") else connection
    with raw.cursor() as cur:
        cur.execute(script.encode("utf-8"))


def apply_sources(conninfo: str) -> None:
    """Build the schema straight from the sources (models, then function files).

    Used by the test that proves migrations equal the sources; never on a real database.
    """
    engine = engine_for(conninfo)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS scitq")
        models.metadata.create_all(connection)
        for _name, text in sql.function_sources():
            execute_script(connection.connection, text)


def run_frozen_sql(connection: Any, revision: str) -> None:
    """Execute a migration's frozen SQL files (``migrations/sql/<revision>/*.sql``) in order."""
    folder = migrations_dir() / "sql" / revision
    for path in sorted(folder.glob("*.sql")):
        execute_script(connection.connection, path.read_text(encoding="utf-8"))
