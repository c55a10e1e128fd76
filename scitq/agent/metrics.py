"""Host metrics sent with heartbeats: load, CPU (busy and I/O wait), memory, the disk of
the work dir (free, total, the claim floor), disk and network throughput.

Sampled with psutil when a heartbeat leaves and a sample is due (every
``metrics_seconds``, and at once when the disk crosses the claim floor, so that
``scitq task explain`` knows): a few reads of ``/proc`` and one ``statvfs`` (the disk
policy's cached one), nothing per task. Rates and percentages cover the time since the
previous sample. The database keeps one day of them (`scitq.worker_metrics`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import psutil

from scitq.agent.diskpolicy import DiskPolicy

Metrics = dict[str, float | int | None]


class HostSampler:
    """Takes the samples of one agent; the first one primes the counters."""

    def __init__(
        self, disk: DiskPolicy, period: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._disk = disk
        self._period = period
        self._clock = clock
        self._last_at: float | None = None
        self._last_low: bool | None = None
        self._counters = self._read_counters()
        psutil.cpu_times_percent(interval=None)  # primes the CPU percentages

    def at_heartbeat(self) -> Metrics | None:
        """What a heartbeat carries: a sample when one is due; starts a disk sweep when due."""
        self._disk.sweep_in_background()  # in a thread: a heartbeat never waits for removals
        return self.sample() if self.due() else None

    def due(self) -> bool:
        """Whether the next heartbeat should carry a sample."""
        if self._period <= 0:
            return False
        if self._last_at is None or self._clock() - self._last_at >= self._period:
            return True
        return self._is_low() != self._last_low  # the claim floor was crossed

    def sample(self) -> Metrics:
        """The figures now (rates since the previous sample)."""
        now = self._clock()
        elapsed = None if self._last_at is None else now - self._last_at
        self._last_at, self._last_low = now, self._is_low()
        cpu = psutil.cpu_times_percent(interval=None)
        iowait = float(getattr(cpu, "iowait", 0.0))
        memory = psutil.virtual_memory()
        counters, previous = self._read_counters(), self._counters
        self._counters = counters
        metrics: Metrics = {
            "load1": os.getloadavg()[0],
            "cpu_percent": max(0.0, 100.0 - cpu.idle - iowait),
            "iowait_percent": iowait,
            "memory_used_bytes": memory.total - memory.available,
            "memory_total_bytes": memory.total,
            "disk_free_bytes": self._disk.free_bytes(),
            "disk_total_bytes": self._disk.total_bytes(),
            "disk_floor_bytes": self._disk.floor,
        }
        for name, value in counters.items():
            before = previous.get(name)
            rate = None
            if elapsed and before is not None and value >= before:
                rate = (value - before) / elapsed
            metrics[name] = rate
        return metrics

    def _is_low(self) -> bool:
        return self._disk.floor is not None and self._disk.free_bytes() < self._disk.floor

    @staticmethod
    def _read_counters() -> dict[str, Any]:
        disk = psutil.disk_io_counters()
        network = psutil.net_io_counters()
        return {
            "disk_read_bytes_per_second": disk.read_bytes if disk else None,
            "disk_write_bytes_per_second": disk.write_bytes if disk else None,
            "network_receive_bytes_per_second": network.bytes_recv if network else None,
            "network_send_bytes_per_second": network.bytes_sent if network else None,
        }
