"""``[transfer]`` and its tables ``s3``, ``ftp``, ``ena``, ``rclone``: how data is staged
(``SCITQ_TRANSFER_*``, ``SCITQ_S3_*``, ``SCITQ_FTP_*``, ``SCITQ_ENA_*``, ``SCITQ_RCLONE_*``;
docs/transfer.md, docs/transfer-ena.md)."""

from __future__ import annotations

import netrc
from dataclasses import dataclass, field
from pathlib import Path

from scitq.config.paths import default_data_dir
from scitq.config.source import NOT_A_KEY, ConfigSource, key
from scitq.errors import ConfigError


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
    multipart_threshold: int = field(default=8 * 2**20, metadata=NOT_A_KEY)
    multipart_chunksize: int = field(default=8 * 2**20, metadata=NOT_A_KEY)
    #: Parallel parts per file.
    max_concurrency: int = field(default=4, metadata=NOT_A_KEY)


@dataclass(frozen=True, slots=True, kw_only=True)
class FtpSettings:
    """FTP credentials (``[transfer.ftp]``, ``SCITQ_FTP_*``).

    Without a user, the ``.netrc`` entry for the host is used, then anonymous login.
    The ``.netrc`` file: ``SCITQ_NETRC``, the ``netrc`` key, ``NETRC``, ``~/.netrc``.
    """

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    netrc: Path | None = field(
        default_factory=lambda: Path.home() / ".netrc",
        metadata=key(env="SCITQ_NETRC", fallback_env="NETRC"),
    )


def _url_problem(url: str) -> str | None:
    return None if "://" in url else "must be a URL (scheme://host...)"


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

    portal_url: str = field(
        default="https://www.ebi.ac.uk/ena/portal/api", metadata=key(check=_url_problem)
    )
    sra_url: str = field(
        default="https://sra-pub-run-odp.s3.amazonaws.com/sra",
        metadata=key(env="SCITQ_SRA_URL", check=_url_problem),
    )
    https_base: str | None = field(default=None, metadata=key(check=_url_problem))
    ftp_base: str | None = field(default=None, metadata=key(check=_url_problem))
    ca_file: Path | None = None
    fasterq_dump: str = field(default="fasterq-dump", metadata=key(env="SCITQ_FASTERQ_DUMP"))


@dataclass(frozen=True, slots=True, kw_only=True)
class RcloneSettings:
    """rclone remotes as URI schemes (``[transfer.rclone]``, ``SCITQ_RCLONE_*``).

    A URI ``<remote>://bucket/path`` is served by rclone when ``<remote>`` is a remote of
    its configuration file and no built-in scheme of scitq has that name.

    Attributes:
        config: rclone's configuration file (``rclone config file``); None: rclone's own
            default (``RCLONE_CONFIG``, ``~/.config/rclone/rclone.conf``).
        command: the rclone program.
    """

    config: Path | None = None
    command: str = "rclone"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferSettings:
    """How data is staged (``[transfer]``, ``SCITQ_TRANSFER_*``; docs/transfer.md)."""

    s3: S3Settings = field(default_factory=S3Settings, metadata=NOT_A_KEY)
    ftp: FtpSettings = field(default_factory=FtpSettings, metadata=NOT_A_KEY)
    ena: EnaSettings = field(default_factory=EnaSettings, metadata=NOT_A_KEY)
    rclone: RcloneSettings = field(default_factory=RcloneSettings, metadata=NOT_A_KEY)
    #: Attempts after the first one, per item.
    retries: int = 3
    #: Back-off before retry n is min(max, base * 2**n) * a random factor in [0.5, 1].
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 120.0
    #: Files moved at once by one staging call.
    parallel: int = field(default=4, metadata=key(minimum=1))
    #: Per-item timeout: base + size / min_rate (a stalled transfer ends, a big one may
    #: take its time).
    timeout_base_seconds: float = 300.0
    timeout_min_rate_bytes: float = 1 * 2**20
    #: Connection and read (idle socket) timeouts for network schemes.
    connect_timeout_seconds: float = 30.0
    read_timeout_seconds: float = 120.0
    #: Where resources are cached, one download per URI for all tasks of the machine.
    cache_dir: Path = field(
        default_factory=lambda: default_data_dir() / "resources",
        metadata=key(env="SCITQ_RESOURCE_CACHE_DIR"),
    )


def transfer_settings(source: ConfigSource, data_dir: Path | None = None) -> TransferSettings:
    """``[transfer]`` and its sub-tables, each key overridden by its variable; the resource
    cache defaults to ``<data_dir>/resources`` (the ``[database]`` data dir)."""
    values = source.read(
        TransferSettings,
        "transfer",
        env_prefix="SCITQ_TRANSFER_",
        subsections=("s3", "ftp", "ena", "rclone"),
    )
    if data_dir is not None:
        values.setdefault("cache_dir", data_dir / "resources")
    return TransferSettings(
        s3=S3Settings(**source.read(S3Settings, "transfer.s3", env_prefix="SCITQ_S3_")),
        ftp=FtpSettings(**source.read(FtpSettings, "transfer.ftp", env_prefix="SCITQ_FTP_")),
        ena=EnaSettings(**source.read(EnaSettings, "transfer.ena", env_prefix="SCITQ_ENA_")),
        rclone=RcloneSettings(
            **source.read(RcloneSettings, "transfer.rclone", env_prefix="SCITQ_RCLONE_")
        ),
        **values,
    )


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
