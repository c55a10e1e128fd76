"""The embedded cluster's processes: which are its own, and waiting for them to end.

psutil costs a few milliseconds to import, which every command pays when it checks that
the embedded server runs: on Linux that check reads ``/proc`` as psutil would, and
psutil loads only to stop or clean up a cluster.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil


def is_postgres_in(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a live (not zombie) ``postgres`` working in ``pgdata``."""
    if sys.platform == "linux":
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
            # a deleted directory reads "<path> (deleted)": psutil strips the suffix too
            cwd = Path(os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)"))
        except (OSError, ValueError, IndexError):  # gone, or not ours to inspect
            return False
        return state != "Z" and name == "postgres" and cwd == pgdata
    import psutil

    try:
        proc = psutil.Process(pid)
        return (
            proc.status() != psutil.STATUS_ZOMBIE
            and proc.name() == "postgres"
            and Path(proc.cwd()) == pgdata
        )
    except psutil.Error:  # gone, zombie or not ours to inspect
        return False


def cluster_processes(pgdata: Path) -> list[psutil.Process]:
    """Every live postgres process of the cluster in ``pgdata`` (they all chdir to it)."""
    import psutil

    return [proc for proc in psutil.process_iter() if is_postgres_in(proc.pid, pgdata)]


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes exit (zombies count as gone); return the survivors."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            with suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)
