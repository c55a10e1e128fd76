"""How an agent serves: the options of ``scitq agent`` (no table of the file: the command
line and the worker's row decide)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from scitq.config.paths import default_data_dir


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
    #: Keep the work dirs of failed executions (for debugging)...
    keep_failed_work_dirs: bool = True
    #: ...for this many hours (None: until the disk policy needs the space)...
    keep_failed_hours: float | None = 24.0
    #: ...and while the work dir's file system has this much free (None: the claim floor);
    #: below it the oldest kept work dirs are removed first.
    keep_failed_min_free_bytes: int | None = None
    #: Claim nothing while the work dir's file system has less free (None: no floor).
    min_free_disk_bytes: int | None = 256 * 2**20
    #: Evict the least recently used resources of the cache past this size (None: no cap).
    resource_cache_max_bytes: int | None = None
    #: Pull a task's missing container image before its command (False: ``--no-pull``,
    #: the image must be on the worker).
    pull_images: bool = True
    #: Registry credentials: an auth file as ``podman login --authfile`` or ``docker login``
    #: writes it (docker: a ``config.json``). Never stored in the database.
    registry_auth_file: Path | None = None
    pull_timeout_seconds: float = 1800.0
    #: Seconds between the host metrics samples sent with heartbeats (0: none).
    metrics_seconds: float = 30.0
