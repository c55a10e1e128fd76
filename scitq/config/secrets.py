"""Credentials in the environment: which variables hold them, and their removal from a
long-running process once its settings are read (the agent, whose tasks run as the same
Unix user and could read ``/proc/$PPID/environ``).

Removing a variable from `os.environ` is not enough: ``/proc/<pid>/environ`` shows the
block the process was started with, which ``unsetenv`` does not touch. `scrub_credentials`
also overwrites that block (Linux). It cannot hide what is in the process's memory from
a process of the same user allowed to read it (ptrace rules): docs/reliability.md says
how to run tasks as another user.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

#: Words in the names of scitq's own credential variables (SCITQ_DATABASE_URL,
#: SCITQ_S3_SECRET_ACCESS_KEY, SCITQ_FTP_PASSWORD, SCITQ_DB_PASSWORD...).
CREDENTIAL_WORDS = ("DATABASE_URL", "PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY")
#: libpq's clear-text password variable (PGPASSFILE names a file: not a secret itself).
LIBPQ_PASSWORD_VARIABLE = "PGPASSWORD"


def is_credential_variable(name: str) -> bool:
    """Whether the variable holds one of scitq's credentials, or libpq's password."""
    return name == LIBPQ_PASSWORD_VARIABLE or (
        name.startswith("SCITQ_") and any(word in name for word in CREDENTIAL_WORDS)
    )


def scrub_credentials() -> dict[str, str]:
    """Remove the credential variables from this process's environment and wipe them from
    the block ``/proc/self/environ`` shows. Call it once the settings are read, before any
    child starts. Returns what was removed (the caller keeps what it still needs, such as
    ``PGPASSWORD`` for reconnections, in memory)."""
    removed = {name: value for name, value in os.environ.items() if is_credential_variable(name)}
    for name in removed:
        del os.environ[name]  # unsetenv: children no longer inherit it
    if removed:
        _wipe_initial_environment(set(removed))
    return removed


def _wipe_initial_environment(names: set[str]) -> None:
    """Zero the ``NAME=value`` entries of ``names`` in the environment block the kernel
    gave the process (between env_start and env_end of ``/proc/self/stat``). Nothing
    points there any more once the variables are unset; elsewhere than on Linux, nothing
    is done."""
    try:
        # the fields after the command name (which may hold spaces), from field 3 on
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end: fields 50, 51
    except (OSError, IndexError, ValueError):
        return
    if not 0 < start < end:
        return
    block = ctypes.string_at(start, end - start)
    offset = 0
    for entry in block.split(b"\0"):
        name = entry.partition(b"=")[0].decode(errors="replace")
        if name in names:
            ctypes.memset(start + offset, 0, len(entry))
        offset += len(entry) + 1
