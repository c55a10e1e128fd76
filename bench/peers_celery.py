"""Celery + Redis side of bench/peers.py: the app, its task and the timed client.

Runs in the throwaway venv bench/peers.py makes (celery pinned there), never in scitq's.
The worker: ``celery -A peers_celery worker``; the client: ``python peers_celery.py N``,
which prints one JSON line with the seconds from the first submit to the last result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from celery import Celery, group

app = Celery("peers", broker=os.environ["PEERS_REDIS"], backend=os.environ["PEERS_REDIS"])
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task(name="peers.run")  # the same name in the worker and the client (__main__)
def run(command: str) -> int:
    """The workload: the command through ``sh -c``, its output captured (as scitq stores it)."""
    return subprocess.run(["sh", "-c", command], capture_output=True).returncode


def client(count: int) -> None:
    app.connection_for_write().ensure_connection()  # connecting is not the workload
    start = time.perf_counter()
    codes = group(run.s("true") for _ in range(count)).apply_async().get(timeout=600)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "finished": len(codes), "failed": sum(map(bool, codes))}))


if __name__ == "__main__":
    client(int(sys.argv[1]))
