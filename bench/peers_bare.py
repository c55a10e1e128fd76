"""Bare asyncio spawner of bench/peers.py: ``python peers_bare.py N WIDTH``.

``sh -c true`` run N times, WIDTH at a time, output piped and read: what any queue's
worker must do at least. Prints one JSON line with the seconds.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time


async def spawn(count: int, width: int) -> float:
    gate = asyncio.Semaphore(width)

    async def one() -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", "true", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            await proc.communicate()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - start


if __name__ == "__main__":
    count = int(sys.argv[1])
    print(json.dumps({"seconds": asyncio.run(spawn(count, int(sys.argv[2]))), "finished": count}))
