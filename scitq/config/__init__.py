"""Settings: the only package that reads the environment or the configuration file.

Precedence, highest first: command-line flags (applied by the CLI on top of what
`load_settings` returns), ``SCITQ_*`` environment variables, the TOML file named by
``SCITQ_CONFIG`` (default ``<user config dir>/scitq.toml`` when it exists), defaults.

One module per section of the file (`database`, `transfer`, `web`, `scheduler`; `agent`
holds the options of ``scitq agent``, which has no section), all read by the one reader
of `scitq.config.source`: an unknown section or key is refused, with the known ones.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scitq.config.database import LIBPQ_SERVER_VARIABLES, DatabaseSettings, database_settings
from scitq.config.paths import ROOT_DATA_DIR, default_config_file, default_data_dir
from scitq.config.source import ConfigSource
from scitq.errors import ConfigError

if TYPE_CHECKING:
    from scitq.config.agent import AgentSettings
    from scitq.config.scheduler import (
        LocalProviderSettings,
        OpenStackSettings,
        ProviderSettings,
        SchedulerSettings,
        scheduler_settings,
    )
    from scitq.config.transfer import (
        EnaSettings,
        FtpSettings,
        RcloneSettings,
        S3Settings,
        TransferSettings,
        netrc_login,
    )
    from scitq.config.web import WebSettings

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
    "RcloneSettings",
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

#: Names exported here but defined in a section's module, imported on first use: a
#: command that needs only the database (``scitq launch``) loads nothing else.
_LAZY = {
    "AgentSettings": "agent",
    "EnaSettings": "transfer",
    "FtpSettings": "transfer",
    "RcloneSettings": "transfer",
    "S3Settings": "transfer",
    "TransferSettings": "transfer",
    "netrc_login": "transfer",
    "LocalProviderSettings": "scheduler",
    "OpenStackSettings": "scheduler",
    "ProviderSettings": "scheduler",
    "SchedulerSettings": "scheduler",
    "scheduler_settings": "scheduler",
    "WebSettings": "web",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"scitq.config.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _read_transfer(source: ConfigSource, data_dir: Path) -> TransferSettings:
    from scitq.config.transfer import transfer_settings

    return transfer_settings(source, data_dir)


def _read_web(source: ConfigSource, data_dir: Path) -> WebSettings:
    from scitq.config.web import web_settings

    return web_settings(source, data_dir)


def _read_scheduler(source: ConfigSource, data_dir: Path) -> SchedulerSettings:
    from scitq.config.scheduler import read_scheduler_settings

    return read_scheduler_settings(source, data_dir)


#: How each section other than ``database`` is read (from the source, on first use).
_READERS: dict[str, Callable[[ConfigSource, Path], Any]] = {
    "transfer": _read_transfer,
    "web": _read_web,
    "scheduler": _read_scheduler,
}


class Settings:
    """All scitq settings; processes take the part they need.

    ``database`` is read at once; the other sections (``transfer``, ``web``,
    ``scheduler``) when first used, so that their modules load only in the processes
    that need them (and a mistake in one is reported there, in one line). Given as
    arguments, sections are used as they are; a section neither given nor read from a
    configuration has its defaults. Immutable: `replace` returns a changed copy.
    """

    __slots__ = ("_given", "_source", "database")
    database: DatabaseSettings
    _given: dict[str, Any]
    _source: ConfigSource

    def __init__(
        self,
        *,
        database: DatabaseSettings | None = None,
        transfer: TransferSettings | None = None,
        web: WebSettings | None = None,
        scheduler: SchedulerSettings | None = None,
        source: ConfigSource | None = None,
    ) -> None:
        given = {"transfer": transfer, "web": web, "scheduler": scheduler}
        object.__setattr__(self, "database", database or DatabaseSettings())
        object.__setattr__(self, "_source", source or ConfigSource({}, {}))
        object.__setattr__(self, "_given", {k: v for k, v in given.items() if v is not None})

    def _section(self, name: str) -> Any:
        if name not in self._given:
            self._given[name] = _READERS[name](self._source, self.database.data_dir)
        return self._given[name]

    @property
    def transfer(self) -> TransferSettings:
        """The ``[transfer]`` section (S3, FTP, ENA, parallelism)."""
        return self._section("transfer")  # type: ignore[no-any-return]

    @property
    def web(self) -> WebSettings:
        """The ``[web]`` section (the dashboard)."""
        return self._section("web")  # type: ignore[no-any-return]

    @property
    def scheduler(self) -> SchedulerSettings:
        """The ``[scheduler]`` section (duties, recruitment, providers)."""
        return self._section("scheduler")  # type: ignore[no-any-return]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Settings are immutable: use replace({name}=...)")

    def replace(self, **sections: Any) -> Settings:
        """A copy with some sections replaced (``database=``, ``web=``...)."""
        current = {"database": self.database, **self._given, **sections}
        return Settings(**current, source=self._source)

    def with_database_url(self, url: str | None) -> Settings:
        """Return a copy pointed at another database (``None``: embedded)."""
        from dataclasses import replace

        return self.replace(database=replace(self.database, url=url))

    def read_all(self) -> Settings:
        """Read every section now (so that a mistake anywhere is reported now); self."""
        for name in _READERS:
            self._section(name)
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings):
            return NotImplemented
        mine, theirs = self.read_all(), other.read_all()
        return mine.database == theirs.database and mine._given == theirs._given

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        sections = ", ".join(f"{name}={value!r}" for name, value in self._given.items())
        return f"Settings(database={self.database!r}{', ' if sections else ''}{sections})"


def load_settings(environ: Mapping[str, str] | None = None, *, lazy: bool = False) -> Settings:
    """Build the settings from the environment and the configuration file.

    Args:
        environ: the environment to read (``os.environ`` by default); tests pass a dict.
        lazy: read the sections other than ``database`` when first used (the CLI: a
            command loads and checks only what it uses); by default all are read now.

    Raises:
        ConfigError: the file cannot be read, has an unknown section or key, or a value
            (there or in a ``SCITQ_*`` variable) is not valid.
    """
    source = read_config_file(os.environ if environ is None else environ, default_config_file())
    settings = settings_from(source)
    return settings if lazy else settings.read_all()


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
    """The settings an environment and a parsed configuration file give (the sections
    other than ``database`` read when first used)."""
    source.refuse_unknown_sections(SECTIONS)
    return Settings(database=database_settings(source), source=source)
