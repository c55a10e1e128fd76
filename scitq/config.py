"""Settings: the only module that reads the environment or the configuration file.

Precedence, highest first: command-line flags (applied by the CLI on top of what
`load_settings` returns), ``SCITQ_*`` environment variables, the TOML file named by
``SCITQ_CONFIG`` (default ``<user config dir>/scitq.toml`` when it exists), defaults.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

from scitq.errors import ConfigError

#: libpq variables that, when set, mean "use this server" instead of the embedded one.
LIBPQ_SERVER_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE", "PGUSER")

#: Where root keeps the embedded database (a root home is 0700, unreachable by the
#: unprivileged user PostgreSQL must run as).
ROOT_DATA_DIR = Path("/var/lib/scitq")


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseSettings:
    """How to reach PostgreSQL.

    Attributes:
        url: a libpq connection string or URI; None means the embedded server, and the
            empty string means "libpq defaults" (the ``PG*`` environment variables).
        data_dir: where the embedded server keeps its files.
        application_name: reported to PostgreSQL in ``pg_stat_activity``.
    """

    url: str | None = None
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    application_name: str = "scitq"

    @property
    def is_embedded(self) -> bool:
        return self.url is None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSettings:
    """How an agent serves: the options of ``scitq agent``.

    None for concurrency, prefetch or batches keeps what the worker row holds (defaults
    for a new worker: concurrency 1, prefetch 0, every batch).
    """

    name: str = field(default_factory=lambda: socket.gethostname())
    batches: tuple[str, ...] | None = None
    concurrency: int | None = None
    prefetch: int | None = None
    work_dir: Path = field(default_factory=lambda: default_data_dir() / "work")
    #: An execution not renewed for this long is lost; longer than a database outage
    #: the agent should survive, shorter than the wait users accept for a dead machine.
    lease_seconds: float = 120.0
    #: Heartbeat period while executions run (signals arrive this fast) and when idle.
    heartbeat_seconds: float = 2.0
    idle_heartbeat_seconds: float = 10.0
    poll_min_seconds: float = 0.5
    poll_max_seconds: float = 10.0
    #: LISTEN for submissions to wake up early; polling alone stays correct.
    listen: bool = True
    #: On SIGTERM/SIGINT, how long running tasks may finish before they are killed.
    shutdown_grace_seconds: float = 60.0
    #: TERM, then KILL this much later.
    kill_grace_seconds: float = 10.0
    #: Exit once no task is left to claim and nothing runs.
    exit_when_idle: bool = False
    container_runtime: str | None = None
    output_cap_bytes: int = 32 * 2**20
    #: Keep the work dirs of failed executions (for debugging).
    keep_failed_work_dirs: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSettings:
    """How the scheduler runs: the options of ``scitq scheduler``.

    Retention periods of None keep rows forever.
    """

    #: Period of the frequent duties: lease expiry, timeouts, worker liveness.
    duty_seconds: float = 10.0
    #: Period of the retention duty (output and decision log pruning).
    retention_seconds: float = 3600.0
    #: An execution past its download or run timeout by this much gets a kill signal;
    #: still live this long after the signal, it is marked timed out. Longer than the
    #: agent's own TERM-then-KILL sequence, which normally ends it first.
    timeout_grace_seconds: float = 60.0
    #: Delete the output of executions finished more than this many days ago.
    output_retention_days: float | None = None
    #: Delete scheduler decisions older than this many days.
    decision_retention_days: float | None = 30.0
    #: Rows deleted per transaction by the retention duty.
    retention_batch: int = 10000
    #: A standby scheduler tries to take the lock this often.
    lock_retry_seconds: float = 2.0
    #: The active scheduler checks that it still holds the lock this often.
    lock_check_seconds: float = 2.0
    #: On SIGTERM/SIGINT, how long running duties may finish.
    shutdown_grace_seconds: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """All scitq settings; processes take the part they need."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)

    def with_database_url(self, url: str | None) -> Settings:
        """Return a copy pointed at another database (``None``: embedded)."""
        return replace(self, database=replace(self.database, url=url))


def default_data_dir() -> Path:
    """The directory for the embedded database and other local state."""
    if os.geteuid() == 0:
        return ROOT_DATA_DIR
    return Path(platformdirs.user_data_dir("scitq"))


def _read_config_file(environ: Mapping[str, str]) -> dict[str, Any]:
    explicit = environ.get("SCITQ_CONFIG")
    path = (
        Path(explicit) if explicit else Path(platformdirs.user_config_dir("scitq")) / "scitq.toml"
    )
    if not path.exists():
        if explicit:
            raise ConfigError(f"SCITQ_CONFIG names {path}, which does not exist")
        return {}
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment and the configuration file.

    Args:
        environ: the environment to read (``os.environ`` by default); tests pass a dict.
    """
    env = os.environ if environ is None else environ
    file = _read_config_file(env)
    db_file = file.get("database", {})
    if not isinstance(db_file, dict):
        raise ConfigError("[database] in the configuration file must be a table")

    url: str | None = env.get("SCITQ_DATABASE_URL") or db_file.get("url")
    if url is None and any(env.get(name) for name in LIBPQ_SERVER_VARIABLES):
        url = ""  # libpq reads PG* itself
    data_dir_text = env.get("SCITQ_DATA_DIR") or db_file.get("data_dir")
    data_dir = Path(data_dir_text).expanduser() if data_dir_text else default_data_dir()
    return Settings(database=DatabaseSettings(url=url, data_dir=data_dir))
