"""Resource usage of one task's process tree, and the out-of-memory heuristic.

How usage is measured (and how precise it is):

* **Sampling.** Every ~0.5 s, psutil walks the tree under the task's root process (the
  command itself, or the container's first process) and reads, for each live process,
  its resident set size and its CPU times, including ``children_user`` and
  ``children_system`` (the times of children it has already reaped). The sum over the
  live tree is the tree's CPU so far: a finished child moves from its own entry into its
  parent's children times, so it is counted once. The running maximum of these sums is
  kept, as is the peak of the summed RSS.
* **Final rusage.** For a bare command, `scitq.agent.process` reaps the root itself
  with ``os.wait4``, whose rusage is exact for the root and every descendant reaped inside
  the tree (a shell and what it ran). The result takes the larger of the rusage and the
  sampled figures, separately for user and system time. Peak RSS is the sampled
  tree-sum peak, or ``ru_maxrss`` when larger: a kernel high-water mark of the largest
  single process, so it catches a spike shorter than the sampling interval. But the
  kernel carries into the root process the high-water mark of the memory it was
  spawned from (the agent's, at ``exec``), so ``ru_maxrss`` is trusted only above the
  agent's own peak RSS at spawn time; below it only the samples count.
* **Limits.** Sampled CPU misses the last interval before exit of processes that the
  rusage cannot see: containers (the runtime reaps their processes) and processes whose
  parent died first (re-parented outside the tree). For containers the figures are
  therefore sampled only: CPU may be short by up to one interval (0.5 s times the cores
  in use) and a memory spike shorter than 0.5 s may be missed. The summed RSS counts
  shared pages once per process, so a tree of forked workers sharing memory is
  over-estimated. When the runtime's processes are not visible on this machine (a
  remote Docker daemon), CPU and RSS are ``None``: not measured.

Out-of-memory heuristic (``oom_reason``): a task is classified ``oom`` when it ended
with exit code 137 (killed by SIGKILL, or a shell whose child was), scitq did not send
that SIGKILL itself, and either the kernel's OOM-kill counter (``oom_kill`` in
``/proc/vmstat``, machine-wide) rose during the run, or the task's peak RSS reached 90 %
of the memory it could use (the smaller of the machine's RAM and the memory limit of the
root process's cgroup, v1 or v2). The counter is machine-wide, so a task killed by
someone else's SIGKILL while another process was OOM-killed is misclassified; that needs
two rare events at once.
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

#: Seconds between two samples of a running process tree.
SAMPLE_INTERVAL_SECONDS = 0.5
#: The first sample waits this long: shorter commands are measured by their rusage alone.
FIRST_SAMPLE_SECONDS = 0.05
#: How old the OOM-kill count read at a command's start may be (one read serves many
#: short commands; the count is machine-wide, so this widens no blind spot that matters).
OOM_COUNT_MAX_AGE_SECONDS = 0.5
#: Share of the usable memory above which a SIGKILL is attributed to memory exhaustion.
OOM_RSS_FRACTION = 0.9

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_VMSTAT = Path("/proc/vmstat")
# cgroup v1 reports "no limit" as a huge page-aligned number.
_NO_LIMIT = 1 << 60


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    """CPU seconds and peak resident memory of a process tree (``None``: not measured)."""

    cpu_user_seconds: float | None
    cpu_system_seconds: float | None
    peak_rss_bytes: int | None


class ProcessTreeSampler:
    """Samples the CPU times and the summed RSS of the tree under one root process."""

    def __init__(self) -> None:
        self._root: psutil.Process | None = None
        self._user = 0.0
        self._system = 0.0
        self._peak_rss = 0
        self._samples = 0
        #: The smaller of the machine's RAM and the root's cgroup memory limit.
        self.memory_limit_bytes: int | None = None

    @property
    def attached(self) -> bool:
        """Whether a root process has been found."""
        return self._root is not None

    def attach(self, pid: int) -> bool:
        """Start sampling the tree under ``pid``; False if it cannot be seen."""
        try:
            self._root = psutil.Process(pid)
        except psutil.Error:
            return False
        self.memory_limit_bytes = usable_memory_bytes(pid)
        # the root alone: listing children scans every process of the machine, which
        # costs more than a short task; later samples walk the whole tree
        self.sample(with_children=False)
        return True

    def sample(self, *, with_children: bool = True) -> None:
        """Read the tree once; processes that vanish meanwhile are skipped."""
        if self._root is None:
            return
        try:
            children = self._root.children(recursive=True) if with_children else []
            processes = [self._root, *children]
        except psutil.Error:
            return  # the root is gone: its last sample stands
        user = system = 0.0
        rss = 0
        for process in processes:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    rss += process.memory_info().rss
            except psutil.Error:
                continue
            user += times.user + times.children_user
            system += times.system + times.children_system
        self._user = max(self._user, user)
        self._system = max(self._system, system)
        self._peak_rss = max(self._peak_rss, rss)
        self._samples += 1

    def usage(
        self, rusage: resource.struct_rusage | None = None, *, spawner_peak_rss: int = 0
    ) -> ResourceUsage:
        """Combine the samples with the final rusage of the root, if the caller reaped it.

        Args:
            rusage: from ``os.wait4`` on the root.
            spawner_peak_rss: the peak RSS of the process that spawned the root, read after
                the spawn: ``ru_maxrss`` at or below it may be inherited, not the task's.
        """
        if rusage is None and not self._samples:
            return ResourceUsage(None, None, None)
        user, system, peak = self._user, self._system, self._peak_rss
        if rusage is not None:
            user = max(user, rusage.ru_utime)
            system = max(system, rusage.ru_stime)
            maxrss = rusage.ru_maxrss * 1024  # Linux reports KiB
            if maxrss > spawner_peak_rss:
                peak = max(peak, maxrss)
        return ResourceUsage(user, system, peak)


def own_peak_rss_bytes() -> int:
    """This process's peak RSS so far (``VmHWM``, as ``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def oom_kill_count(max_age: float = 0.0) -> int | None:
    """The machine-wide number of OOM kills so far (``None`` if the kernel does not say).

    Args:
        max_age: a count read less than this many seconds ago may be returned instead.
    """
    global _oom_count_cache
    now = time.monotonic()
    if _oom_count_cache is not None and now - _oom_count_cache[0] < max_age:
        return _oom_count_cache[1]
    count = None
    try:
        for line in _VMSTAT.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                count = int(value)
                break
    except (OSError, ValueError):
        pass
    _oom_count_cache = (now, count)
    return count


_oom_count_cache: tuple[float, int | None] | None = None


def oom_kills_since(count: int | None) -> int | None:
    """OOM kills since ``oom_kill_count()`` returned ``count`` (``None``: unknown)."""
    now = oom_kill_count()
    return None if now is None or count is None else now - count


def usable_memory_bytes(pid: int) -> int | None:
    """The smaller of the machine's RAM and the memory limit of ``pid``'s cgroup."""
    limits = [psutil.virtual_memory().total]
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # cgroup v2
            candidates = [_CGROUP_ROOT / relative / "memory.max", _CGROUP_ROOT / "memory.max"]
        elif "memory" in controllers.split(","):
            base = _CGROUP_ROOT / "memory"
            candidates = [base / relative / "memory.limit_in_bytes", base / "memory.limit_in_bytes"]
        else:
            continue
        # Inside a container the path may not exist in this mount namespace: the root
        # of the mount is then the process's own cgroup.
        for candidate in candidates:
            try:
                text = candidate.read_text().strip()
            except OSError:
                continue
            if text.isdigit() and int(text) < _NO_LIMIT:
                limits.append(int(text))
            break
    return min(limits)


def oom_reason(
    return_code: int | None,
    *,
    peak_rss_bytes: int | None,
    memory_limit_bytes: int | None,
    oom_kills_during_run: int | None,
) -> str | None:
    """Why a run looks killed for lack of memory, or ``None`` if it does not.

    See the module docstring for the heuristic and its blind spots. The caller rules out
    a SIGKILL that scitq sent itself.
    """
    if return_code != 128 + 9:
        return None
    if oom_kills_during_run:
        return "killed by SIGKILL (exit code 137) while the kernel OOM killer was active"
    if (
        peak_rss_bytes
        and memory_limit_bytes
        and peak_rss_bytes >= OOM_RSS_FRACTION * memory_limit_bytes
    ):
        return (
            f"killed by SIGKILL (exit code 137) with a peak RSS of "
            f"{peak_rss_bytes / 2**20:.0f} MiB near the memory limit of "
            f"{memory_limit_bytes / 2**20:.0f} MiB"
        )
    return None
