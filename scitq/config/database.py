"""``[database]``: how to reach PostgreSQL (``SCITQ_DATABASE_URL``, ``SCITQ_DATA_DIR``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scitq.config.paths import default_data_dir
from scitq.config.source import NOT_A_KEY, ConfigSource, key

#: libpq variables that, when set, mean "use this server" instead of the embedded one.
LIBPQ_SERVER_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE", "PGUSER")


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseSettings:
    """How to reach PostgreSQL.

    Attributes:
        url: a libpq connection string or URI; None means the embedded server, and the
            empty string means "libpq defaults" (the ``PG*`` environment variables).
        data_dir: where the embedded server keeps its files.
        application_name: reported to PostgreSQL in ``pg_stat_activity``.
    """

    # url = "" in the file is a value: libpq defaults
    url: str | None = field(default=None, metadata=key(empty_is_value=True))
    data_dir: Path = field(
        default_factory=lambda: default_data_dir(), metadata=key(env="SCITQ_DATA_DIR")
    )
    application_name: str = field(default="scitq", metadata=NOT_A_KEY)

    @property
    def is_embedded(self) -> bool:
        return self.url is None


def database_settings(source: ConfigSource) -> DatabaseSettings:
    """``[database]``, each key overridden by its variable; with no URL anywhere, a
    libpq ``PG*`` variable that names a server means "libpq defaults"."""
    values = source.read(DatabaseSettings, "database", env_prefix="SCITQ_DATABASE_")
    if "url" not in values and any(source.environ.get(name) for name in LIBPQ_SERVER_VARIABLES):
        values["url"] = ""  # libpq reads PG* itself
    return DatabaseSettings(**values)
