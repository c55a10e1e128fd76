"""Settings: the only package that reads the environment or the configuration file.

Precedence, highest first: command-line flags (applied by the CLI on top of what
`load_settings` returns), ``SCITQ_*`` environment variables, the TOML file named by
``SCITQ_CONFIG`` (default ``<user config dir>/scitq.toml`` when it exists), defaults.

One module per section of the file (`database`, `transfer`, `web`, `scheduler`; `agent`
holds the options of ``scitq agent``, which has no section), all read by the one reader
of `scitq.config.source`: an unknown section or key is refused, with the known ones.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from scitq.config.agent import AgentSettings
from scitq.config.database import LIBPQ_SERVER_VARIABLES, DatabaseSettings, database_settings
from scitq.config.paths import ROOT_DATA_DIR, default_config_file, default_data_dir
from scitq.config.scheduler import (
    LocalProviderSettings,
    OpenStackSettings,
    ProviderSettings,
    SchedulerSettings,
    read_scheduler_settings,
    scheduler_settings,
)
from scitq.config.source import ConfigSource
from scitq.config.transfer import (
    EnaSettings,
    FtpSettings,
    S3Settings,
    TransferSettings,
    netrc_login,
    transfer_settings,
)
from scitq.config.web import WebSettings, web_settings
from scitq.errors import ConfigError

__all__ = [
    "LIBPQ_SERVER_VARIABLES",
    "ROOT_DATA_DIR",
    "SECTIONS",
    "AgentSettings",
    "ConfigSource",
    "DatabaseSettings",
    "EnaSettings",
    "FtpSettings",
    "LocalProviderSettings",
    "OpenStackSettings",
    "ProviderSettings",
    "S3Settings",
    "SchedulerSettings",
    "Settings",
    "TransferSettings",
    "WebSettings",
    "default_data_dir",
    "load_settings",
    "netrc_login",
    "scheduler_settings",
]

#: The tables of the configuration file.
SECTIONS = ("database", "scheduler", "transfer", "web")


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


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment and the configuration file.

    Args:
        environ: the environment to read (``os.environ`` by default); tests pass a dict.

    Raises:
        ConfigError: the file cannot be read, has an unknown section or key, or a value
            (there or in a ``SCITQ_*`` variable) is not valid.
    """
    source = read_config_file(os.environ if environ is None else environ, default_config_file())
    return settings_from(source)


def read_config_file(environ: Mapping[str, str], default: Path) -> ConfigSource:
    """The configuration file ``SCITQ_CONFIG`` names, else ``default`` if it exists.

    Raises:
        ConfigError: ``SCITQ_CONFIG`` names a missing file, or the file is not TOML.
    """
    explicit = environ.get("SCITQ_CONFIG")
    path = Path(explicit) if explicit else default
    if not path.exists():
        if explicit:
            raise ConfigError(f"SCITQ_CONFIG names {path}, which does not exist")
        return ConfigSource(environ, {})
    try:
        with path.open("rb") as stream:
            return ConfigSource(environ, tomllib.load(stream), str(path))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc


def settings_from(source: ConfigSource) -> Settings:
    """The settings an environment and a parsed configuration file give."""
    source.refuse_unknown_sections(SECTIONS)
    database = database_settings(source)
    return Settings(
        database=database,
        transfer=transfer_settings(source, database.data_dir),
        web=web_settings(source, database.data_dir),
        scheduler=read_scheduler_settings(source, database.data_dir),
    )
