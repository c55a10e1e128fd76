"""The embedded PostgreSQL: what every command uses when no database is configured.

`conninfo_for` is the one place that turns database settings into a connection string:
the configured URL as it is, or the embedded server (`scitq.embedded.server`) started
if needed and migrated to the current schema (`ensure_embedded`). Nothing starts the
embedded server implicitly: the processes (CLI, agent, scheduler, web) and
`scitq.Client` call this.
"""

from __future__ import annotations

from pathlib import Path

from scitq.config import DatabaseSettings


def ensure_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded server in ``data_dir``, migrate it; its conninfo."""
    from scitq.db import revision
    from scitq.embedded.server import EmbeddedServer

    conninfo = EmbeddedServer(data_dir).ensure_running()
    if not revision.is_current(conninfo):
        from scitq.db import migrate  # alembic and sqlalchemy only when a migration may run

        migrate.ensure_current(conninfo)
    return conninfo


def conninfo_for(settings: DatabaseSettings) -> str:
    """The libpq connection string for the configured database.

    With no URL configured this starts (or reuses) the embedded server and migrates it
    on first use.
    """
    if settings.url is not None:
        return settings.url
    return ensure_embedded(settings.data_dir)


def read_conninfos(settings: DatabaseSettings) -> list[str]:
    """Where read-only work connects, in order of preference: the read replica
    (``[database] read_url``) when one is set, then the primary (`conninfo_for`)."""
    primary = conninfo_for(settings)
    if settings.read_url and settings.read_url != primary:
        return [settings.read_url, primary]
    return [primary]
