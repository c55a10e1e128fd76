"""Parent CPU of starting ``sh -c true``: subprocess.Popen as the agent used it vs
`scitq.agent.spawn.spawn` (posix_spawn). See bench/README.md.

    python bench/spawn.py [--count 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from scitq.agent.spawn import spawn


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def popen(folder: Path, env: dict[str, str]) -> None:
    """What scitq.agent.process did before posix_spawn."""
    process = subprocess.Popen(
        ["/bin/sh", "-c", "true"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, cwd=folder, start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.read()
    process.stdout.close()
    process.stderr.close()
    os.wait4(process.pid, 0)
    process.returncode = 0


def posix(folder: Path, env: dict[str, str]) -> None:
    started = spawn(["/bin/sh", "-c", "true"], env, folder)
    os.read(started.stdout, 65536)
    started.close()
    os.wait4(started.pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    env = dict(os.environ)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for way in (popen, posix, popen, posix):
            cpu0, wall0 = cpu(), time.perf_counter()
            for _ in range(args.count):
                way(folder, env)
            spent, wall = cpu() - cpu0, time.perf_counter() - wall0
            print(f"{way.__name__:>6}: parent CPU {spent * 1e3 / args.count:.3f} ms per start, "
                  f"wall {wall * 1e3 / args.count:.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
