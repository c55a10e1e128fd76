"""Scale at 10^7 tasks and 10^7 output rows (issue 16 point 4). Run by hand, never in CI.

1. 10^7 tasks (``--tasks``) over 10 batches, inserted by ``INSERT ... SELECT`` as the
   superuser (the task triggers run: event log and batch counters); then
   ``--executions`` of them claimed, given ``--lines`` output rows each (``INSERT ...
   SELECT``, the same rows agents write) and finished (one in ten failed).
2. At that size: ``scitq.batch_progress``, ``scitq batch list`` (in-process), the
   dashboard pages (Flask test client), ``task_claim_v1(10)`` at 10^7 pending; the same
   claim in a database of 10^3 pending.
3. Output: the tail of one log, then retention: a DELETE of one range's rows (what
   pruning did before) against ``partition_prune_v1`` dropping the other ranges.

    PYTHONPATH=. python bench/scale_large.py [--tasks N] [--executions N] [--lines N]
        [--writers N] [--failed-days D]

``--lines 1000`` gives 10^8 output rows (10^5 executions); ``--writers 2`` writes two
ranges at once (one per core).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from scale import dashboard, median_ms, server  # bench/scale.py

from scitq.db import migrate
from scitq.db.execution import execution_finish, execution_output_tail
from scitq.db.partition import partition_ensure, partition_prune
from scitq.db.task import task_claim
from scitq.db.worker import worker_register

BATCHES = 10
FILL = """
INSERT INTO scitq.task (batch_id, name, command, status)
SELECT b.id, 't' || g, 'echo ' || g, 'pending'
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) g
JOIN scitq.batch b ON b.name = 'b' || (g %% %(batches)s)
"""
OUTPUT = """
INSERT INTO scitq.execution_output (execution_id, seq, stream, at, text)
SELECT e.id, s, 'stdout', now(), 'line ' || s || ' of execution ' || e.id || ': some output text'
FROM scitq.execution e, generate_series(0, %(lines)s - 1) s
WHERE e.id >= %(start)s AND e.id < %(stop)s
"""


def timed(action: Any) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def claim_ms(conn: psycopg.Connection[Any], worker: int, runs: int = 50) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        task_claim(conn, worker, 10)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def database(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    url = make_conninfo(admin, dbname=name)
    migrate.upgrade(url)
    return url


def fill(conn: psycopg.Connection[Any], tasks: int, chunk: int = 500_000) -> float:
    for i in range(BATCHES):
        conn.execute("INSERT INTO scitq.batch (name) VALUES (%s)", (f"b{i}",))
    start = time.perf_counter()
    for first in range(1, tasks + 1, chunk):
        last = min(first + chunk - 1, tasks)
        conn.execute(FILL, {"start": first, "stop": last, "batches": BATCHES})
        print(f"  {last:>11,} tasks, {time.perf_counter() - start:.0f} s", flush=True)
    return time.perf_counter() - start


def run(conn: psycopg.Connection[Any], url: str, args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"load average at start": os.getloadavg()}
    figures["fill: tasks inserted (s)"] = fill(conn, args.tasks)
    conn.execute("VACUUM ANALYZE scitq.task")
    worker = worker_register(
        conn, "w-big", batches=["b1"], concurrency=10**6, lease_seconds=86400.0
    )["id"]  # a lease longer than the output writing below
    width = args.executions // 10
    # the bench's ranges: ten of the executions it makes (the fresh database has 10^5)
    for (name,) in conn.execute(
        "SELECT name FROM scitq.partition_bounds('scitq.execution_output')"
    ).fetchall():
        conn.execute(psycopg.sql.SQL("DROP TABLE scitq.{}").format(psycopg.sql.Identifier(name)))
    partition_ensure(conn, output_width=width, output_ahead=11)
    start = time.perf_counter()
    claimed: list[dict[str, Any]] = []
    while len(claimed) < args.executions:
        claimed += task_claim(conn, worker, 1000)
    figures["claim executions (s)"] = time.perf_counter() - start
    ids = [c["execution_id"] for c in claimed]
    start = time.perf_counter()

    def write(first: int) -> None:  # one range, on a connection of its own
        with psycopg.connect(url, autocommit=True) as own:
            own.execute(OUTPUT, {"lines": args.lines, "start": first, "stop": first + width})
        print(f"  output of executions < {first + width:,}, "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip

    with ThreadPoolExecutor(args.writers) as pool:
        list(pool.map(write, range(min(ids), max(ids) + 1, width)))
    figures["output rows written"] = args.executions * args.lines
    figures["output writers"] = args.writers
    figures["write output rows (s)"] = time.perf_counter() - start
    for first in range(0, len(claimed), 1000):
        results = [{"execution_id": c["execution_id"], "return_code": int(i % 10 == 0)}
                   for i, c in enumerate(claimed[first:first + 1000])]  # fmt: skip
        execution_finish(conn, worker, results)
    conn.execute("VACUUM ANALYZE")
    figures["load average at size"] = os.getloadavg()
    figures["SELECT * FROM scitq.batch_progress (ms)"] = median_ms(
        lambda: conn.execute("SELECT * FROM scitq.batch_progress").fetchall()
    )
    figures["batch_progress of one batch (ms)"] = median_ms(
        lambda: conn.execute("SELECT * FROM scitq.batch_progress WHERE batch = 'b3'").fetchall()
    )
    from click.testing import CliRunner

    from scitq.cli import scitq

    def batch_list() -> None:
        result = CliRunner().invoke(scitq, ["--database-url", url, "batch", "list"])
        assert result.exit_code == 0, result.output

    figures["scitq batch list, in-process (ms)"] = median_ms(batch_list)
    figures.update(dashboard(conn, url))
    p50, p95 = claim_ms(conn, worker)
    figures["claim 10 at 10^7 pending: p50 / p95 (ms)"] = (p50, p95)
    tail = ids[len(ids) // 2]
    figures["log tail (256 chunks) of one execution (ms)"] = median_ms(
        lambda: execution_output_tail(conn, tail, limit=256)
    )
    # retention: a DELETE of one range against partition drops of the others
    first = min(ids)
    start = time.perf_counter()
    deleted = conn.execute(
        "DELETE FROM scitq.execution_output WHERE execution_id >= %s AND execution_id < %s",
        (first, first + width),
    ).rowcount
    figures[f"DELETE of {deleted:,} output rows (s)"] = time.perf_counter() - start
    start = time.perf_counter()
    acted = partition_prune(conn, 30, args.failed_days, None, now=_later(conn, 31))
    figures["partition_prune_v1: dropped / kept (failed copied)"] = (
        sum(r["action"] == "dropped" for r in acted),
        sum(r["rows"] for r in acted if r["action"] == "kept"),
    )
    figures["partition_prune_v1 (s)"] = time.perf_counter() - start
    return figures


def _later(conn: psycopg.Connection[Any], days: int) -> Any:
    return conn.execute("SELECT now() + make_interval(days => %s)", (days,)).fetchone()[0]


def small_claim(admin: str) -> tuple[float, float]:
    url = database(admin, "scitq_scale_small")
    with psycopg.connect(url, autocommit=True) as conn:
        fill(conn, 1_000 + 500, chunk=1_500)
        conn.execute("VACUUM ANALYZE scitq.task")
        worker = worker_register(conn, "w-small", batches=["b1"], concurrency=10**6)["id"]
        return claim_ms(conn, worker, runs=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a superuser libpq URL (default: embedded)")
    parser.add_argument("--tasks", type=int, default=10_000_000)
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=100, help="output rows per execution")
    parser.add_argument("--writers", type=int, default=1, help="output ranges written at once")
    parser.add_argument(
        "--failed-days",
        type=float,
        default=90.0,
        help="failed output kept (0: the prune copies nothing, only drops)",
    )
    args = parser.parse_args()
    with server(args.database_url) as (admin, _embedded):
        figures = {"claim 10 at 10^3 pending: p50 / p95 (ms)": small_claim(admin)}
        url = database(admin, "scitq_scale_large")
        with psycopg.connect(url, autocommit=True) as conn:
            figures.update(run(conn, url, args))
    for name, value in figures.items():
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
