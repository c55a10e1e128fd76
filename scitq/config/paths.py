"""Where scitq keeps local state by default."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Where root keeps the embedded database (a root home is 0700, unreachable by the
#: unprivileged user PostgreSQL must run as).
ROOT_DATA_DIR = Path("/var/lib/scitq")


def default_data_dir() -> Path:
    """The directory for the embedded database and everything else scitq writes locally
    (agents' work dirs, the resource cache, the scheduler's local agents): ``SCITQ_DATA_DIR``
    when set, else ``/var/lib/scitq`` for root (whatever ``HOME`` is), else the user data
    directory (``~/.local/share/scitq`` on Linux)."""
    explicit = os.environ.get("SCITQ_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if os.geteuid() == 0:
        return ROOT_DATA_DIR
    return _user_dir("XDG_DATA_HOME", ".local/share", "user_data_dir")


def default_config_file() -> Path:
    """The configuration file read when ``SCITQ_CONFIG`` names none."""
    return _user_dir("XDG_CONFIG_HOME", ".config", "user_config_dir") / "scitq.toml"


def _user_dir(variable: str, default: str, platformdirs_name: str) -> Path:
    """``<XDG directory>/scitq`` on Linux (what platformdirs says, without its 5 ms import
    on every command), platformdirs' answer elsewhere."""
    if sys.platform.startswith("linux"):
        base = os.environ.get(variable, "").strip()
        return (Path(base) if base else Path.home() / default) / "scitq"
    import platformdirs

    return Path(getattr(platformdirs, platformdirs_name)("scitq"))
