"""The agent's report pass at the SQL level: its time and its server CPU, by size.

A pass is what the agent sends in one round trip (`scitq.agent.reports`): the ``running``
phase of K executions, their results and a claim of K more, in one pipelined transaction
(``execution_set_phase_v2``, ``execution_finish_v1``, ``task_claim_v2``). The script
submits the tasks, claims K, then makes passes until none is left, on one connection (as
the agent's reporter does), and prints per size: mean milliseconds per pass, per task,
and the CPU of the server backend per pass (psutil; the server must run on this machine).

    python bench/report_pass.py [--database-url URL] [--sizes 1,8,32] [--tasks 3000]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import psutil
import psycopg
from control_plane import Databases, machine, server, table  # run as bench/report_pass.py
from psycopg.rows import dict_row

from scitq.db.execution import execution_finish, execution_set_phases, pass_idle_limit
from scitq.db.query import run_together
from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_register


def passes(db: str, size: int, tasks: int) -> tuple[float, float, int]:
    """Mean wall and backend CPU (ms) per pass, and the number of passes."""
    with psycopg.connect(db, autocommit=True, row_factory=dict_row) as conn:
        task_submit(conn, "pass", [{"command": "true"}] * tasks)
        worker = worker_register(conn, "w", concurrency=size)["id"]
        claimed = task_claim(conn, worker, size)
    return asyncio.run(_passes(db, worker, size, claimed))


async def _passes(db: str, worker: int, size: int, claimed: list[Any]) -> tuple[float, float, int]:
    # the agent's reporter: an asynchronous connection, the pass in pipeline mode
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        backend = psutil.Process(conn.info.backend_pid)
        cpu, began, count = sum(backend.cpu_times()[:2]), time.perf_counter(), 0
        while claimed:
            ids = [row["execution_id"] for row in claimed]
            results = [{"execution_id": i, "return_code": 0, "wall_seconds": 0.003,
                        "cpu_user_seconds": 0.001, "cpu_system_seconds": 0.001,
                        "peak_rss_bytes": 2_000_000} for i in ids]  # fmt: skip
            answers = await run_together(conn, [
                pass_idle_limit.bind(5000),
                execution_set_phases.bind(worker, ids, "running"),
                execution_finish.bind(worker, results),
                task_claim.bind(worker, size),
            ])  # fmt: skip
            claimed, count = answers[-1], count + 1
        wall = (time.perf_counter() - began) * 1e3 / count
        return wall, (sum(backend.cpu_times()[:2]) - cpu) * 1e3 / count, count


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a superuser URL (default: embedded server)")
    parser.add_argument("--sizes", default="1,8,32", help="tasks per pass, comma-separated")
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per size")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    with server(args.database_url) as (admin, where):
        print(machine(admin, where), flush=True)
        dbs = Databases(admin)
        try:
            found: dict[int, list[tuple[float, float, int]]] = {size: [] for size in sizes}
            for _ in range(args.rounds):  # interleaved: a change of load hits every size
                for size in sizes:
                    found[size].append(passes(dbs.fresh(), size, args.tasks))
        finally:
            dbs.drop_all()
    rows = []
    for size, runs in found.items():
        wall = statistics.median(run[0] for run in runs)
        cpu = statistics.median(run[1] for run in runs)
        rows.append([f"{size}", f"{runs[0][2]}", f"{wall:.2f}", f"{wall / size:.3f}",
                     f"{cpu:.2f}", f"{cpu / size:.3f}"])  # fmt: skip
    header = ["tasks per pass", "passes", "ms per pass", "ms per task", "server CPU ms per pass",
              "server CPU ms per task"]  # fmt: skip
    print(table(f"Report passes, median of {args.rounds} rounds", header, rows))


if __name__ == "__main__":
    sys.exit(main())
