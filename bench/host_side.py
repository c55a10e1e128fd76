"""What the agent's issue-18 additions cost per call, on this machine (no database).

* the disk check before each claim (`DiskPolicy.claim_refusal`: a cached statvfs), and
  an uncached reading;
* one host metrics sample (`HostSampler.sample`: psutil, at heartbeat time only);
* the image look-up before a container task: the first one asks the runtime
  (``podman image inspect``), later ones are a set look-up (`ImagePuller.ensure`).

    PYTHONPATH=. python bench/host_side.py [--image scitq-test-busybox]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from scitq.agent.diskpolicy import DiskPolicy
from scitq.agent.images import ImagePuller
from scitq.agent.metrics import HostSampler
from scitq.config import AgentSettings


def per_call(function: Callable[[], object], count: int) -> float:
    """Microseconds per call, best of three runs."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count):
            function()
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="scitq-test-busybox")
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M')} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        disk = DiskPolicy(AgentSettings(work_dir=Path(work)))
        sampler = HostSampler(disk, 30.0)
        rows = [
            ("claim check (cached statvfs)", per_call(disk.claim_refusal, 100_000)),
            ("free space, fresh statvfs", per_call(lambda: disk.free_bytes(fresh=True), 20_000)),
            ("host metrics sample", per_call(sampler.sample, 2_000)),
        ]
    puller = ImagePuller("podman")

    async def first_then_cached() -> tuple[float, float]:
        started = time.perf_counter()
        outcome = await puller.ensure(args.image)
        first = (time.perf_counter() - started) * 1e6
        assert not hasattr(outcome, "reason"), outcome
        started = time.perf_counter()
        for _ in range(10_000):
            await puller.ensure(args.image)
        return first, (time.perf_counter() - started) / 10_000 * 1e6

    first, cached = asyncio.run(first_then_cached())
    rows += [("image look-up, first (podman image inspect)", first),
             ("image look-up, later tasks", cached)]  # fmt: skip
    for name, micros in rows:
        print(f"{name:45s} {micros:12.1f} µs")


if __name__ == "__main__":
    main()
