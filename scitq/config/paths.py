"""Where scitq keeps local state by default."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

#: Where root keeps the embedded database (a root home is 0700, unreachable by the
#: unprivileged user PostgreSQL must run as).
ROOT_DATA_DIR = Path("/var/lib/scitq")


def default_data_dir() -> Path:
    """The directory for the embedded database and other local state."""
    if os.geteuid() == 0:
        return ROOT_DATA_DIR
    return Path(platformdirs.user_data_dir("scitq"))


def default_config_file() -> Path:
    """The configuration file read when ``SCITQ_CONFIG`` names none."""
    return Path(platformdirs.user_config_dir("scitq")) / "scitq.toml"
