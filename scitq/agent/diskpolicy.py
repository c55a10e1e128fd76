"""The agent's disk policy: what it keeps on the work dir's file system, and when it stops
claiming because that file system is nearly full.

* **Claim floor** (``min_free_disk_bytes``): while less is free, the agent claims nothing
  (running tasks go on) and says so once in its log and in its heartbeat's metrics, which
  ``scitq task explain`` reads ("worker X claims nothing: its disk has ... free").
* **Failed work dirs** are kept for debugging (``keep_failed_work_dirs``) at most
  ``keep_failed_hours``, and only while at least ``keep_failed_min_free_bytes`` (by
  default the floor) is free: below it the oldest go first. Work dirs of failed
  executions left by an earlier run of the agent are adopted at start, aged by their mtime.
* **Resource cache** (shared by the agents of the machine): past
  ``resource_cache_max_bytes`` the least recently used resources are evicted, and below
  the floor, once no failed work dir is left to remove, more of them.

The free space is read with one ``statvfs`` call, cached for a second: the claim loop
asks before every claim and must stay cheap. Removals run in a thread (`sweep`), from
the heartbeat loop about once a minute, and at once when the floor is reached; the
cache's cap is applied right after a download that grew it (`cap_cache`).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from scitq.agent.process import CommandResult
from scitq.config import AgentSettings
from scitq.db.explain import size_text
from scitq.transfer.cache import ResourceCache

logger = logging.getLogger(__name__)

#: Seconds a free-space reading is reused.
FREE_SPACE_MAX_AGE_SECONDS = 1.0
#: Seconds between sweeps while nothing presses.
SWEEP_SECONDS = 60.0
_EXECUTION_PREFIX = "execution-"


class DiskPolicy:
    """Watches the free space of the work dir's file system and applies the policy."""

    def __init__(
        self,
        settings: AgentSettings,
        cache: Callable[[], ResourceCache | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = settings.work_dir
        self.keep_failed = settings.keep_failed_work_dirs
        self.floor = settings.min_free_disk_bytes
        self.keep_seconds = (
            None if settings.keep_failed_hours is None else settings.keep_failed_hours * 3600
        )
        keep_free = settings.keep_failed_min_free_bytes
        self.keep_min_free = keep_free if keep_free is not None else self.floor
        self.cache_cap = settings.resource_cache_max_bytes
        self._cache = cache
        self._clock = clock
        self._free = 0
        self._total = 0
        self._read_at = float("-inf")
        self._kept: dict[Path, float] = {}  # failed work dir -> when it was kept (epoch)
        self._lock = threading.Lock()  # _kept is changed by the loop and the sweep thread
        self._swept_at = float("-inf")
        self._sweeper: threading.Thread | None = None
        self._refusing = False
        #: Work dirs and resource bytes the policy removed, for tests and logs.
        self.removed_dirs = 0
        self.evicted_bytes = 0
        self.adopt_leftovers()

    # -- free space ---------------------------------------------------------------------

    def free_bytes(self, *, fresh: bool = False) -> int:
        """Bytes free for unprivileged users on the work dir's file system."""
        now = self._clock()
        if fresh or now - self._read_at > FREE_SPACE_MAX_AGE_SECONDS:
            try:
                found = os.statvfs(self.root)
            except OSError:
                return self._free  # the root vanished: keep the last reading
            self._free, self._total = (
                found.f_bavail * found.f_frsize,
                found.f_blocks * found.f_frsize,
            )
            self._read_at = now
        return self._free

    def total_bytes(self) -> int:
        self.free_bytes()
        return self._total

    def claim_refusal(self, *, fresh: bool = False) -> str | None:
        """Why the agent must not claim now (the free space is below the floor), else None."""
        if self.floor is None:
            return None
        free = self.free_bytes(fresh=fresh)
        refusing = free < self.floor
        if refusing != self._refusing:
            self._refusing = refusing
            if refusing:
                logger.warning(
                    "claiming nothing: %s free on %s, below the floor of %s",
                    size_text(free), self.root, size_text(self.floor),
                    extra={"action": "low_disk", "free_bytes": free},
                )  # fmt: skip
            else:
                logger.info("disk space is back: claiming again", extra={"action": "disk_ok"})
        if not refusing:
            return None
        self.sweep_in_background()  # what the policy may remove, at once
        return f"{size_text(free)} free, below the floor of {size_text(self.floor)}"

    # -- failed work dirs ---------------------------------------------------------------

    def keeps(self, result: CommandResult | None, *, dead: bool) -> bool:
        """Whether an execution's work dir stays for debugging: it failed (not abandoned)
        and failed work dirs are kept."""
        succeeded = result is not None and result.failure_class is None and result.return_code == 0
        return self.keep_failed and not succeeded and not dead

    def keep(self, work_dir: Path) -> None:
        """A failed execution's work dir stays, until the policy removes it."""
        with self._lock:
            self._kept.setdefault(work_dir, time.time())
        self._read_at = float("-inf")  # what it holds now counts at the next claim

    def adopt_leftovers(self) -> None:
        """Work dirs of executions left by an earlier run: kept, aged by their mtime."""
        if not self.root.is_dir():
            return
        for entry in os.scandir(self.root):
            path = Path(entry.path)
            if entry.name.startswith(_EXECUTION_PREFIX) and entry.is_dir():
                try:
                    at = entry.stat().st_mtime
                except OSError:
                    continue
                with self._lock:
                    self._kept.setdefault(path, at)

    def kept(self) -> list[Path]:
        """The failed work dirs kept, oldest first."""
        with self._lock:
            return sorted(self._kept, key=self._kept.__getitem__)

    # -- sweeping -----------------------------------------------------------------------

    def sweep_due(self) -> bool:
        """Whether a sweep is due (about once a minute, or now below a threshold)."""
        if self._clock() - self._swept_at >= SWEEP_SECONDS:
            return True
        below = [limit for limit in (self.floor, self.keep_min_free) if limit is not None]
        return bool(below) and self.free_bytes() < max(below) and bool(self._kept or self._cache())

    def cap_cache(self) -> None:
        """Evict past the cache's cap (blocking: run it in a thread), after a download."""
        cache = self._cache()
        if cache is not None and self.cache_cap is not None:
            self.evicted_bytes += cache.evict(self.cache_cap)

    def sweep_in_background(self) -> None:
        """Start a sweep in a thread when one is due and none runs."""
        if self._sweeper is not None and self._sweeper.is_alive():
            return
        if self.sweep_due():
            self._swept_at = self._clock()
            self._sweeper = threading.Thread(
                target=self._sweep_logged, name="disk-sweep", daemon=True
            )
            self._sweeper.start()

    def _sweep_logged(self) -> None:
        try:
            self.sweep()
        except Exception:  # a sweep must never stop the agent
            logger.exception("disk sweep failed", extra={"action": "disk_sweep_error"})

    def sweep(self) -> None:
        """Apply the policy once (blocking: run it in a thread)."""
        self._swept_at = self._clock()
        if self.keep_seconds is not None:
            oldest_kept = time.time() - self.keep_seconds
            for path in self.kept():
                if self._kept.get(path, 0.0) < oldest_kept:
                    self._remove(path, "kept longer than the policy allows")
        if self.keep_min_free is not None:
            for path in self.kept():
                if self.free_bytes(fresh=True) >= self.keep_min_free:
                    break
                self._remove(path, "the disk is low")
        self.cap_cache()
        cache = self._cache()
        if cache is None:
            return
        if self.floor is not None and (free := self.free_bytes(fresh=True)) < self.floor:
            self.evicted_bytes += cache.evict(max(0, cache.size() - (self.floor - free)))
        self.free_bytes(fresh=True)

    def _remove(self, path: Path, why: str) -> None:
        shutil.rmtree(path, ignore_errors=True)
        with self._lock:
            self._kept.pop(path, None)
        self.removed_dirs += 1
        logger.info(
            "removed the failed work dir %s: %s", path, why,
            extra={"action": "work_dir_removed", "path": str(path)},
        )  # fmt: skip
