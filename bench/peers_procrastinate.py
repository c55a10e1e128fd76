"""procrastinate side of bench/peers.py: the app, its task and the timed client.

Runs in the throwaway venv bench/peers.py makes (procrastinate pinned there). The worker:
``procrastinate --app peers_procrastinate.app worker``; the client:
``python peers_procrastinate.py N``, which prints one JSON line with the seconds from the
first submit to the moment it has seen every job finished. procrastinate has no result
API: the client polls the jobs table every 20 ms (what a user would write, and quicker
than scitq's own wait used to poll).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo=os.environ["PEERS_PG"]))
DONE = (
    "SELECT count(*) AS n FROM procrastinate_jobs"
    " WHERE id BETWEEN %(low)s AND %(high)s AND status IN ('succeeded', 'failed')"
)


@app.task(name="peers.run", queue="peers")  # the same name in the client (__main__)
async def run(command: str) -> int:
    """The workload: the command through ``sh -c``, its output captured."""
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    await proc.communicate()
    return proc.returncode or 0


async def client(count: int) -> None:
    async with app.open_async():
        start = time.perf_counter()
        ids = await run.batch_defer_async(*({"command": "true"} for _ in range(count)))
        bounds = {"low": min(ids), "high": max(ids)}
        while (await app.connector.execute_query_one_async(DONE, **bounds))["n"] < count:
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "finished": count}))


if __name__ == "__main__":
    asyncio.run(client(int(sys.argv[1])))
