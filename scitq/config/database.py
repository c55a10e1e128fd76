"""``[database]``: how to reach PostgreSQL (``SCITQ_DATABASE_URL``, ``SCITQ_DATA_DIR``,
and ``SCITQ_SERVER``, the server as scitq v1 scripts name it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from scitq.config.paths import default_data_dir
from scitq.config.source import NOT_A_KEY, ConfigSource, key
from scitq.errors import ConfigError

#: libpq variables that, when set, mean "use this server" instead of the embedded one.
LIBPQ_SERVER_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE", "PGUSER")


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseSettings:
    """How to reach PostgreSQL.

    Attributes:
        url: a libpq connection string or URI; None means the embedded server, and the
            empty string means "libpq defaults" (the ``PG*`` environment variables).
        data_dir: where the embedded server keeps its files.
        read_url: a read replica (a hot standby) for read-only commands and the
            dashboard's reports (``SCITQ_DATABASE_READ_URL``); None or "": the primary.
            Whoever reads from it falls back to the primary when it does not answer.
        application_name: reported to PostgreSQL in ``pg_stat_activity``.
        server: the scitq v1 server name (``SCITQ_SERVER``) that `scitq.lib.Server` and
            the v1 commands use when given none (see `server_database_url`).
    """

    # url = "" in the file is a value: libpq defaults
    url: str | None = field(default=None, metadata=key(empty_is_value=True))
    read_url: str | None = None
    data_dir: Path = field(
        default_factory=lambda: default_data_dir(), metadata=key(env="SCITQ_DATA_DIR")
    )
    application_name: str = field(default="scitq", metadata=NOT_A_KEY)
    server: str | None = field(default=None, metadata=key(env="SCITQ_SERVER"))

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


#: Host names that mean this machine: with no database configured, its embedded server.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: The port of scitq v1's REST server: in a v1 address it says nothing of PostgreSQL's.
V1_PORT = 5000
#: The database `scitq db serve` exposes (and a remote server is assumed to hold).
DEFAULT_DATABASE = "scitq"
_HOST_PORT = re.compile(
    r"^(?:\[(?P<ipv6>[0-9a-fA-F:]+)\]|(?P<host>[A-Za-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?$"
)


def server_database_url(server: str | None, configured: str | None) -> str | None:
    """The database a scitq v1 server name designates.

    scitq v1 scripts name their server as a host (``Server('scitq.lab')``, the
    ``SCITQ_SERVER`` variable), sometimes ``host:port`` or ``http://host:5000``. scitq v2
    has no REST server: the name maps to that host's PostgreSQL, with what is configured
    (``[database] url``: user, password, database, port; else libpq's ``PG*`` variables
    and ``~/.pgpass``) for the rest.

    Args:
        server: a host name, ``host:port`` (PostgreSQL's port; 5000, v1's, is ignored),
            ``http(s)://host[:port]`` (the port is v1's and ignored), or a PostgreSQL URL
            or conninfo, used as it is. None or "": the configured database.
        configured: the configured database URL (None: the embedded server).

    Returns:
        The conninfo to use; None for the embedded server (no server named, or this
        machine's name while no database is configured).

    Raises:
        ConfigError: ``server`` is none of these forms.
    """
    if not server or not server.strip():
        return configured
    text = server.strip()
    if text.startswith(("postgresql://", "postgres://")) or "=" in text:
        return text
    port: int | None = None
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"scitq server {server!r}: give a host name, host:port, http://host:5000 "
                "or a postgresql:// URL"
            )
        host = parts.hostname
    else:
        match = _HOST_PORT.match(text)
        if match is None:
            raise ConfigError(
                f"scitq server {server!r}: give a host name, host:port, http://host:5000 "
                "or a postgresql:// URL"
            )
        host = match["ipv6"] or match["host"]
        port = int(match["port"]) if match["port"] else None
        if port == V1_PORT:
            port = None
    if configured is None and host in LOCAL_HOSTS and port is None:
        return None
    # imported here: reading the settings must not load the database driver
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from psycopg.errors import ProgrammingError

    try:
        found = conninfo_to_dict(configured) if configured else {"dbname": DEFAULT_DATABASE}
    except ProgrammingError as exc:  # a configured URL libpq cannot parse
        raise ConfigError(f"the configured database URL cannot be read: {exc}") from None
    base = {name: str(value) for name, value in found.items() if value is not None}
    base.pop("hostaddr", None)
    base["host"] = host
    if port is not None:
        base["port"] = str(port)
    return make_conninfo("", **base)
