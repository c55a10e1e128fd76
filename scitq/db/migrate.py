"""Creating and upgrading the database schema (Alembic), and its current state.

Tables come from `scitq.db.models`; functions, views, triggers and roles from frozen SQL
files executed by each migration (the current sources live in ``scitq/sql/functions``).
``migrations/sql/<revision>/`` holds only the files that revision changes (the first one,
all of them); `run_frozen_sql` and `rerun_previous_sql` apply them (migrations/README.md).
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
from scitq.db.revision import migrations_dir

logger = logging.getLogger(__name__)

#: Advisory lock key held while migrating, so concurrent first uses migrate once.
MIGRATION_LOCK = 0x5C17_0001


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


#: Files that grant privileges on every function and view of the schema (roles, grants):
#: re-run after every upgrade and downgrade, in their version at the target revision, so
#: that the functions a revision adds get their privileges without a copy of these files.
PRIVILEGE_FILE_PREFIX = "9"


def frozen_revisions() -> list[str]:
    """The revisions with frozen SQL files, oldest first (revision ids sort in order)."""
    return sorted(path.name for path in (migrations_dir() / "sql").iterdir() if path.is_dir())


def frozen_files(revision: str) -> dict[str, Path]:
    """The SQL files as they stand at ``revision``: for each name, its latest version in
    this revision or an earlier one. An empty file marks a file the revision removed."""
    files: dict[str, Path] = {}
    for held in frozen_revisions():
        if held > revision:
            break
        files.update({path.name: path for path in (migrations_dir() / "sql" / held).glob("*.sql")})
    return {name: path for name, path in sorted(files.items()) if path.stat().st_size}


def _run_files(connection: Any, paths: list[Path], revision: str) -> None:
    """Execute ``paths`` in file-name order, then the privilege files as of ``revision``."""
    privileges = [path for name, path in frozen_files(revision).items() if _is_privileges(name)]
    for path in sorted(paths, key=lambda path: path.name) + privileges:
        if path.stat().st_size:
            execute_script(connection.connection, path.read_text(encoding="utf-8"))


def _is_privileges(name: str) -> bool:
    return name.startswith(PRIVILEGE_FILE_PREFIX)


def run_frozen_sql(connection: Any, revision: str) -> None:
    """Upgrade to ``revision``: execute the SQL files it holds (``migrations/sql/<revision>/``,
    only those it changes), then the privilege files as they stand at ``revision``."""
    held = sorted((migrations_dir() / "sql" / revision).glob("*.sql"))
    _run_files(connection, [path for path in held if not _is_privileges(path.name)], revision)


def rerun_previous_sql(connection: Any, revision: str) -> None:
    """Downgrade from ``revision``: for each SQL file it holds, execute that file's previous
    version (the latest earlier revision holding it), then the privilege files of the
    previous revision. What the revision adds (a new function, a new file's functions) is
    for its Python to drop first: no earlier version re-creates or removes it."""
    earlier = [held for held in frozen_revisions() if held < revision]
    if not earlier:
        raise ValueError(f"revision {revision} has no previous revision to go back to")
    before = frozen_files(earlier[-1])
    held = sorted((migrations_dir() / "sql" / revision).glob("*.sql"))
    paths = [before[path.name] for path in held if path.name in before]
    _run_files(connection, [path for path in paths if not _is_privileges(path.name)], earlier[-1])
