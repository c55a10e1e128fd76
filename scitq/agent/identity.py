"""Which worker an agent process is, and which work dir it owns.

Two agents on one machine must be two workers: a worker row resumed by a second agent
would mark the first one's executions lost. So every agent process holds, for its whole
life, an exclusive lock on its work dir (``agent.lock``, which also says who holds it)
and one on its worker name (``<data dir>/agents/<name>.lock``):

* with no ``--work-dir``, an agent takes the first free one of ``<data dir>/work``,
  ``work-2``, ``work-3``...; with one, it refuses a work dir another agent holds,
  naming that agent;
* with no ``--name``, the worker is named after the host and a short suffix, chosen
  once per work dir and kept in it (``worker-name``): a restarted agent resumes its own
  worker, a second agent gets another one;
* a name another agent of this machine holds is refused, naming that agent; a name
  whose worker heartbeats from another host is refused by `refuse_live_elsewhere`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from scitq.agent.link import DatabaseLink
from scitq.db.worker import worker_liveness
from scitq.errors import InvalidArgument, PermissionDenied
from scitq.states import WorkerLiveness

#: The lock file in a work dir; its text says which agent holds it.
LOCK_FILE = "agent.lock"
#: The worker name chosen for a work dir, kept for the next agent of that work dir.
NAME_FILE = "worker-name"
#: How many default work dirs (``work``, ``work-2``...) an agent tries.
MAX_DEFAULT_WORK_DIRS = 64


class AgentConflict(InvalidArgument):
    """Another live agent already is this worker, or already uses this work dir."""


@dataclass
class Identity:
    """The worker an agent process is and the work dir it owns (locks held until `release`)."""

    name: str
    work_dir: Path
    _fds: list[int] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


def _lock(path: Path) -> int | None:
    """An open descriptor of ``path`` holding an exclusive lock, or None if another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _holder(path: Path) -> str:
    """Who holds a lock file, from what it says (``worker NAME, pid N``)."""
    try:
        said: dict[str, Any] = json.loads(path.read_text())
        return f"worker {said['worker']!r}, pid {said['pid']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another agent"


def _write_holder(fd: int, name: str) -> None:
    text = json.dumps({"worker": name, "pid": os.getpid()}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, text, 0)


def _default_name(work_dir: Path, hostname: str) -> str:
    """The name kept in the work dir, or a new one (host name and a short suffix)."""
    path = work_dir / NAME_FILE
    with contextlib.suppress(OSError):
        kept = path.read_text().strip()
        if kept:
            return kept
    name = f"{hostname}-{secrets.token_hex(2)}"
    path.write_text(name + "\n")
    return name


def claim_identity(
    data_dir: Path, *, name: str | None, work_dir: Path | None, hostname: str
) -> Identity:
    """Lock a work dir and a worker name for this process (see the module's docstring).

    Raises:
        AgentConflict: the given work dir or the name is held by another agent here.
    """
    fds: list[int] = []
    try:
        if work_dir is not None:
            candidates = [work_dir]
        else:
            base = data_dir / "work"
            extra = [base.with_name(f"work-{n}") for n in range(2, MAX_DEFAULT_WORK_DIRS + 1)]
            candidates = [base, *extra]
        chosen: Path | None = None
        for candidate in candidates:
            fd = _lock(candidate / LOCK_FILE)
            if fd is not None:
                fds.append(fd)
                chosen = candidate
                break
        if chosen is None:
            holder = _holder(candidates[0] / LOCK_FILE)
            if work_dir is not None:
                raise AgentConflict(
                    f"work dir {work_dir} is in use by the agent of {holder}: "
                    "give this agent another --work-dir"
                )
            raise AgentConflict(
                f"every default work dir under {data_dir} is in use "
                f"({len(candidates)} agents): give this agent a --work-dir"
            )
        worker = name if name is not None else _default_name(chosen, hostname)
        name_lock = data_dir / "agents" / f"{quote(worker, safe='')}.lock"
        fd = _lock(name_lock)
        if fd is None:
            raise AgentConflict(
                f"worker {worker!r} is already served by an agent of this machine "
                f"({_holder(name_lock)}): give this agent another --name"
            )
        fds.append(fd)
        for held in fds:
            _write_holder(held, worker)
        return Identity(worker, chosen, fds)
    except BaseException:
        for held in fds:
            os.close(held)
        raise


async def refuse_live_elsewhere(link: DatabaseLink, name: str, hostname: str) -> None:
    """Refuse to become a worker that heartbeats from another host.

    A live worker of this host with our name cannot exist (the name lock says so): its
    row is left by an agent that died, which registering resumes. An agent's own login
    role may not read the view: then only the name lock applies.

    Raises:
        AgentConflict: the worker is online and its host is another one.
    """
    try:
        worker = await link.call(worker_liveness.run_async, name)
    except PermissionDenied:
        return
    if worker is None or worker["liveness"] != WorkerLiveness.ONLINE:
        return
    if worker["hostname"] not in (None, hostname):
        raise AgentConflict(
            f"worker {worker['name']!r} is live on host {worker['hostname']} (last heartbeat "
            f"{worker['seconds_since_heartbeat']:.0f} s ago): give this agent another --name"
        )
