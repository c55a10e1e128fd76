"""Settings: the only module that reads the environment or the configuration file.

Precedence, highest first: command-line flags (applied by the CLI on top of what
`load_settings` returns), ``SCITQ_*`` environment variables, the TOML file named by
``SCITQ_CONFIG`` (default ``<user config dir>/scitq.toml`` when it exists), defaults.
"""

from __future__ import annotations

import netrc
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
class LocalProviderSettings:
    """The ``local`` provider: agents as processes of this machine (``[providers.local]``).

    Attributes:
        state_dir: where each agent's pid file, log and work directory go.
        max_agents: agents it runs at most (its quota).
        agent_options: extra options for ``scitq agent`` (e.g. ``["--heartbeat", "1"]``).
        stop_grace_seconds: after SIGTERM, how long an agent may hand back its tasks
            before it is killed.
    """

    state_dir: Path = field(default_factory=lambda: default_data_dir() / "local-agents")
    max_agents: int = field(default_factory=lambda: os.cpu_count() or 1)
    agent_options: tuple[str, ...] = ()
    stop_grace_seconds: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenStackSettings:
    """The ``openstack`` provider (``[providers.openstack]``).

    Attributes:
        cloud: a cloud name of ``clouds.yaml``; None: ``auth`` below.
        auth: keystone auth (``auth_url``, ``username``, ``password``, ``project_name``,
            ``user_domain_name``, ``project_domain_name``) when no cloud is named.
        region: the default region.
        flavor, image: defaults when a recruiter names none.
        network: the network servers are attached to (name or id).
        key_name: a keypair for SSH access (optional).
        security_groups: names of security groups (optional).
        max_instances: servers it runs at most (its quota as scitq counts it).
        name_prefix: servers (and workers) are named ``<prefix>-<instance id>``.
        install_command: run by cloud-init to install scitq on the server.
        boot_seconds: how long to wait for a server to become ACTIVE.
        poll_seconds: how often to ask.
    """

    cloud: str | None = None
    auth: dict[str, str] = field(default_factory=dict)
    region: str | None = None
    flavor: str | None = None
    image: str | None = None
    network: str | None = None
    key_name: str | None = None
    security_groups: tuple[str, ...] = ()
    max_instances: int = 10
    name_prefix: str = "scitq"
    install_command: str = "python3 -m pip install --break-system-packages scitq"
    boot_seconds: float = 600.0
    poll_seconds: float = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSettings:
    """The providers the scheduler may use: ``local`` always, ``openstack`` when set."""

    local: LocalProviderSettings = field(default_factory=LocalProviderSettings)
    openstack: OpenStackSettings | None = None


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
    # -- recruitment (issue 9) --
    #: Period of the recruit duty (recruit, reuse, destroy idle, start cloud operations).
    recruit_seconds: float = 10.0
    #: A recruited worker with nothing to do for this long is destroyed.
    idle_grace_seconds: float = 120.0
    #: An instance whose agent has not registered this long after its creation is
    #: destroyed (a machine that failed to boot or to install scitq).
    boot_timeout_seconds: float = 900.0
    #: Cloud operations run at once (threads; provider calls are slow).
    operation_threads: int = 4
    #: Attempts of an operation that fails transiently, and the first back-off (doubled
    #: after each failure).
    operation_attempts: int = 3
    operation_retry_seconds: float = 10.0
    #: After a failed deploy, a recruiter waits this long (doubled per failure in a row,
    #: at most an hour) before it deploys again.
    deploy_backoff_seconds: float = 60.0
    #: The database address cloud agents connect to, without credentials (each gets its
    #: own role); None: the scheduler's own address.
    agent_database_url: str | None = None
    providers: ProviderSettings = field(default_factory=lambda: ProviderSettings())


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    """How the web dashboard serves: the ``[web]`` table and ``SCITQ_WEB_*`` variables.

    Attributes:
        host: the address to listen on (loopback by default: put a reverse proxy with
            TLS in front to serve other machines).
        port: the TCP port.
        secret_key: the key that signs session cookies; None reads (or creates, mode
            0600) ``secret_key_file``.
        secret_key_file: where the generated key is kept.
        trusted_header: a request header naming the logged-in user, set by a reverse
            proxy that authenticated them (e.g. ``X-Remote-User``); None disables it.
            Only enable it when nothing but the proxy can reach the dashboard.
        threads: requests served at once (and database connections held at most).
    """

    host: str = "127.0.0.1"
    port: int = 5000
    secret_key: str | None = None
    secret_key_file: Path = field(default_factory=lambda: default_data_dir() / "web-secret-key")
    trusted_header: str | None = None
    threads: int = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Settings:
    """How to reach S3 (``[transfer.s3]``, ``SCITQ_S3_*``).

    Anything left None falls back to boto3's own resolution: ``AWS_*`` environment
    variables, ``~/.aws/config`` and ``~/.aws/credentials``, instance roles.
    Credentials are never repr'd (they must not reach logs).
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    #: Files larger than this are sent and fetched in parts of this size.
    multipart_threshold: int = 8 * 2**20
    multipart_chunksize: int = 8 * 2**20
    #: Parallel parts per file.
    max_concurrency: int = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class FtpSettings:
    """FTP credentials (``[transfer.ftp]``, ``SCITQ_FTP_*``).

    Without a user, the ``.netrc`` entry for the host is used, then anonymous login.
    """

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    netrc: Path | None = field(default_factory=lambda: Path.home() / ".netrc")


@dataclass(frozen=True, slots=True, kw_only=True)
class EnaSettings:
    """Where ``run+fastq://`` and ``run+submitted://`` find public sequencing data
    (``[transfer.ena]``, ``SCITQ_ENA_*``, ``SCITQ_SRA_URL``; docs/transfer-ena.md).

    Attributes:
        portal_url: the ENA portal API (its ``filereport`` endpoint lists a run's files).
        sra_url: where SRA objects are fetched for ``@sra`` (``<sra_url>/<acc>/<acc>``).
        https_base: replaces ``https://<host>`` of the file locations ENA reports (a
            mirror of ftp.sra.ebi.ac.uk); None downloads from the reported host.
        ftp_base: the same for FTP (``ftp://mirror.example.org:2121``).
        ca_file: extra certificate authorities (PEM) trusted for these HTTPS services.
        fasterq_dump: the sra-tools command that converts SRA objects (``@sra``).
    """

    portal_url: str = "https://www.ebi.ac.uk/ena/portal/api"
    sra_url: str = "https://sra-pub-run-odp.s3.amazonaws.com/sra"
    https_base: str | None = None
    ftp_base: str | None = None
    ca_file: Path | None = None
    fasterq_dump: str = "fasterq-dump"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferSettings:
    """How data is staged (``[transfer]``, ``SCITQ_TRANSFER_*``; docs/transfer.md)."""

    s3: S3Settings = field(default_factory=S3Settings)
    ftp: FtpSettings = field(default_factory=FtpSettings)
    ena: EnaSettings = field(default_factory=EnaSettings)
    #: Attempts after the first one, per item.
    retries: int = 3
    #: Back-off before retry n is min(max, base * 2**n) * a random factor in [0.5, 1].
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 120.0
    #: Files moved at once by one staging call.
    parallel: int = 4
    #: Per-item timeout: base + size / min_rate (a stalled transfer ends, a big one may
    #: take its time).
    timeout_base_seconds: float = 300.0
    timeout_min_rate_bytes: float = 1 * 2**20
    #: Connection and read (idle socket) timeouts for network schemes.
    connect_timeout_seconds: float = 30.0
    read_timeout_seconds: float = 120.0
    #: Where resources are cached, one download per URI for all tasks of the machine.
    cache_dir: Path = field(default_factory=lambda: default_data_dir() / "resources")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """All scitq settings; processes take the part they need."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    transfer: TransferSettings = field(default_factory=TransferSettings)
    web: WebSettings = field(default_factory=WebSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)

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


def _transfer_table(file: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = file.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] in the configuration file must be a table")
    return value


def _number(text: Any, name: str, kind: type[int] | type[float]) -> Any:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, not {text!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative ({value})")
    return value


def _transfer_settings(env: Mapping[str, str], file: Mapping[str, Any]) -> TransferSettings:
    """``[transfer]``, ``[transfer.s3]``, ``[transfer.ftp]`` and their variables."""
    section = _transfer_table(file, "transfer")
    s3_file = _transfer_table(section, "s3")
    ftp_file = _transfer_table(section, "ftp")

    def pick(variable: str, table: Mapping[str, Any], key: str) -> Any:
        return env.get(variable) or table.get(key)

    defaults = TransferSettings()
    s3 = S3Settings(
        endpoint_url=pick("SCITQ_S3_ENDPOINT_URL", s3_file, "endpoint_url"),
        region=pick("SCITQ_S3_REGION", s3_file, "region"),
        profile=pick("SCITQ_S3_PROFILE", s3_file, "profile"),
        access_key_id=pick("SCITQ_S3_ACCESS_KEY_ID", s3_file, "access_key_id"),
        secret_access_key=pick("SCITQ_S3_SECRET_ACCESS_KEY", s3_file, "secret_access_key"),
    )
    netrc_text = pick("SCITQ_NETRC", ftp_file, "netrc") or env.get("NETRC")
    ftp = FtpSettings(
        user=pick("SCITQ_FTP_USER", ftp_file, "user"),
        password=pick("SCITQ_FTP_PASSWORD", ftp_file, "password"),
        netrc=Path(netrc_text).expanduser() if netrc_text else FtpSettings().netrc,
    )
    numbers: dict[str, Any] = {}
    for key, kind in (
        ("retries", int),
        ("backoff_base_seconds", float),
        ("backoff_max_seconds", float),
        ("parallel", int),
        ("timeout_base_seconds", float),
        ("timeout_min_rate_bytes", float),
        ("connect_timeout_seconds", float),
        ("read_timeout_seconds", float),
    ):
        variable = f"SCITQ_TRANSFER_{key.upper()}"
        value = pick(variable, section, key)
        if value is not None:
            numbers[key] = _number(value, variable if env.get(variable) else key, kind)
    if numbers.get("parallel") == 0:
        raise ConfigError("transfer parallel must be at least 1")
    cache_text = pick("SCITQ_RESOURCE_CACHE_DIR", section, "cache_dir")
    cache_dir = Path(cache_text).expanduser() if cache_text else defaults.cache_dir
    return TransferSettings(
        s3=s3, ftp=ftp, ena=_ena_settings(env, section), cache_dir=cache_dir, **numbers
    )


def _ena_settings(env: Mapping[str, str], transfer: Mapping[str, Any]) -> EnaSettings:
    """``[transfer.ena]`` and its variables (``SCITQ_ENA_*``, ``SCITQ_SRA_URL``)."""
    table = _transfer_table(transfer, "ena")
    defaults = EnaSettings()
    values: dict[str, Any] = {}
    for key, variable in (
        ("portal_url", "SCITQ_ENA_PORTAL_URL"),
        ("sra_url", "SCITQ_SRA_URL"),
        ("https_base", "SCITQ_ENA_HTTPS_BASE"),
        ("ftp_base", "SCITQ_ENA_FTP_BASE"),
        ("ca_file", "SCITQ_ENA_CA_FILE"),
        ("fasterq_dump", "SCITQ_FASTERQ_DUMP"),
    ):
        value = env.get(variable) or table.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise ConfigError(f"transfer.ena {key} must be a non-empty string, not {value!r}")
        values[key] = value
    for key in ("portal_url", "sra_url", "https_base", "ftp_base"):
        url = values.get(key, getattr(defaults, key))
        if url is not None and "://" not in url:
            raise ConfigError(f"transfer.ena {key} must be a URL (scheme://host...), not {url!r}")
    if "ca_file" in values:
        values["ca_file"] = Path(values["ca_file"]).expanduser()
    return EnaSettings(**values)


def netrc_login(path: Path | None, host: str, user: str | None = None) -> tuple[str, str] | None:
    """The (login, password) a ``.netrc`` file gives for ``host``, or None.

    Args:
        path: the file (`FtpSettings.netrc`); None or a missing file: no entry.
        host: the machine name to look up (``default`` entries apply too).
        user: when given, the entry must be for this login.

    Raises:
        ConfigError: the file exists but cannot be parsed.
    """
    if path is None or not path.is_file():
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (OSError, netrc.NetrcParseError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if entry is None:
        return None
    login, _account, password = entry
    if user is not None and login != user:
        return None
    return login, password or ""


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
    return Settings(
        database=DatabaseSettings(url=url, data_dir=data_dir),
        web=_web_settings(env, file.get("web", {}), data_dir),
        transfer=_transfer_settings(env, file),
        scheduler=scheduler_settings(env, file, data_dir),
    )


def _web_settings(env: Mapping[str, str], table: Any, data_dir: Path) -> WebSettings:
    """The ``[web]`` table, overridden by ``SCITQ_WEB_*`` variables."""
    if not isinstance(table, dict):
        raise ConfigError("[web] in the configuration file must be a table")

    def value(key: str) -> Any:
        return env.get(f"SCITQ_WEB_{key.upper()}") or table.get(key)

    def integer(key: str, default: int, low: int, high: int) -> int:
        raw = value(key)
        if raw is None:
            return default
        try:
            number = int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"web {key} must be a whole number, not {raw!r}") from None
        if not low <= number <= high:
            raise ConfigError(f"web {key} must be between {low} and {high}, not {number}")
        return number

    key_file = value("secret_key_file")
    return WebSettings(
        host=str(value("host") or "127.0.0.1"),
        port=integer("port", 5000, 0, 65535),
        secret_key=value("secret_key") or None,
        secret_key_file=Path(key_file).expanduser() if key_file else data_dir / "web-secret-key",
        trusted_header=value("trusted_header") or None,
        threads=integer("threads", 8, 1, 256),
    )


# -- scheduler and providers (issue 9) ----------------------------------------------------


def _sub_table(parent: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    table = parent.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] in the configuration file must be a table")
    return table


def _typed(where: str, key: str, raw: Any, kind: type) -> Any:
    """``raw`` (from TOML or an environment variable) as ``kind``, or a ConfigError."""
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is tuple:
            items = raw if isinstance(raw, list) else str(raw).split()
            return tuple(str(item) for item in items)
        if kind is Path:
            return Path(str(raw)).expanduser()
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} {key} must be a {kind.__name__}, not {raw!r}") from None
    if kind in (int, float) and value < 0:
        raise ConfigError(f"{where} {key} must not be negative, not {raw!r}")
    return value


def _fields_from(
    cls: Any, where: str, table: Mapping[str, Any], env: Mapping[str, str], prefix: str,
    kinds: Mapping[str, type],
) -> dict[str, Any]:  # fmt: skip
    """The fields of dataclass ``cls`` given in ``table`` or as ``<prefix><FIELD>``."""
    known = set(kinds)
    unknown = sorted(set(table) - known - {"local", "openstack"})
    if unknown:
        raise ConfigError(
            f"unknown setting{'s' if len(unknown) > 1 else ''} in [{where}]: "
            f"{', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    values: dict[str, Any] = {}
    for key, kind in kinds.items():
        raw = env.get(prefix + key.upper()) if prefix else None
        if raw is None or raw == "":
            raw = table.get(key)
        if raw is not None:
            values[key] = _typed(where, key, raw, kind)
    return values


_SCHEDULER_KINDS: dict[str, type] = {
    "duty_seconds": float, "retention_seconds": float, "timeout_grace_seconds": float,
    "output_retention_days": float, "decision_retention_days": float, "retention_batch": int,
    "lock_retry_seconds": float, "lock_check_seconds": float, "shutdown_grace_seconds": float,
    "recruit_seconds": float, "idle_grace_seconds": float, "boot_timeout_seconds": float,
    "operation_threads": int, "operation_attempts": int, "operation_retry_seconds": float,
    "deploy_backoff_seconds": float, "agent_database_url": str,
}  # fmt: skip
_LOCAL_KINDS: dict[str, type] = {
    "state_dir": Path, "max_agents": int, "agent_options": tuple, "stop_grace_seconds": float,
}  # fmt: skip
_OPENSTACK_KINDS: dict[str, type] = {
    "cloud": str, "region": str, "flavor": str, "image": str, "network": str,
    "key_name": str, "security_groups": tuple, "max_instances": int, "name_prefix": str,
    "install_command": str, "boot_seconds": float, "poll_seconds": float,
}  # fmt: skip
_OPENSTACK_AUTH_KEYS = ("auth_url", "username", "password", "project_name", "project_id",
                        "user_domain_name", "project_domain_name", "project_domain_id")  # fmt: skip


def scheduler_settings(
    env: Mapping[str, str], file: Mapping[str, Any], data_dir: Path | None = None
) -> SchedulerSettings:
    """The ``[scheduler]`` table (and ``[scheduler.local]``, ``[scheduler.openstack]``),
    each key overridden by ``SCITQ_SCHEDULER_<KEY>`` (``SCITQ_LOCAL_<KEY>``,
    ``SCITQ_OPENSTACK_<KEY>`` for the providers). Unknown keys are errors.

    OpenStack credentials are never read from scitq's variables: name a cloud of
    ``clouds.yaml`` (``cloud``), or give ``[scheduler.openstack.auth]``.
    """
    table = _sub_table(file, "scheduler", "scheduler")
    values = _fields_from(SchedulerSettings, "scheduler", table, env, "SCITQ_SCHEDULER_",
                          _SCHEDULER_KINDS)  # fmt: skip
    local_table = _sub_table(table, "local", "scheduler.local")
    local = _fields_from(LocalProviderSettings, "scheduler.local", local_table, env,
                         "SCITQ_LOCAL_", _LOCAL_KINDS)  # fmt: skip
    if "state_dir" not in local and data_dir is not None:
        local["state_dir"] = data_dir / "local-agents"
    openstack: OpenStackSettings | None = None
    if "openstack" in table or env.get("SCITQ_OPENSTACK_CLOUD"):
        os_table = dict(_sub_table(table, "openstack", "scheduler.openstack"))
        auth = _sub_table(os_table, "auth", "scheduler.openstack.auth")
        os_table.pop("auth", None)
        bad = sorted(set(auth) - set(_OPENSTACK_AUTH_KEYS))
        if bad:
            raise ConfigError(f"unknown key in [scheduler.openstack.auth]: {', '.join(bad)}")
        os_values = _fields_from(OpenStackSettings, "scheduler.openstack", os_table, env,
                                 "SCITQ_OPENSTACK_", _OPENSTACK_KINDS)  # fmt: skip
        if not os_values.get("cloud") and not auth.get("auth_url"):
            raise ConfigError(
                "[scheduler.openstack] needs cloud (a name in clouds.yaml) or "
                "[scheduler.openstack.auth] with auth_url"
            )
        openstack = OpenStackSettings(auth={k: str(v) for k, v in auth.items()}, **os_values)
    providers = ProviderSettings(local=LocalProviderSettings(**local), openstack=openstack)
    return SchedulerSettings(providers=providers, **values)
