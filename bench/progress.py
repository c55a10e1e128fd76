"""Progress reads (scitq.batch_progress) at 10^3, 10^5 and 10^6 tasks, fresh and analyzed.

For each size, a new database (autovacuum off for its tables, so that nothing analyzes
them behind the benchmark's back) where one connection prepares the read while the tables
are empty (`plan_cache_mode = force_generic_plan`: the plan a long-lived connection such
as `Client.wait` keeps until an ANALYZE), then the tasks are submitted into one batch and
10 % of them (at most 20,000) claimed and finished. Timed, median of 5 reads: the view for
one batch and for all batches, planned with each call ("fresh") and through the plan
cached on empty tables ("cached"); then after ANALYZE. Issue 20 measured 607 s for the
cached read after a 2,000-task run before the change.

    PYTHONPATH=. python bench/progress.py [--database-url URL] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).parent))
from control_plane import machine, server, table

from scitq.db import migrate

READ_ONE = "SELECT * FROM scitq.batch_progress WHERE batch = 'b0'"
READ_ALL = "SELECT * FROM scitq.batch_progress"
HEADER = ("tasks", "statistics", "one batch fresh", "one batch cached", "all fresh", "all cached")


def timed(conn: psycopg.Connection[object], statement: str, repeat: int = 5) -> float:
    """Median milliseconds of ``repeat`` reads (after one untimed)."""
    conn.execute(statement).fetchall()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        conn.execute(statement).fetchall()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def fill(conninfo: str, tasks: int) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        chunk = min(tasks, 50_000)
        for start in range(0, tasks, chunk):
            conn.execute(
                "SELECT count(*) FROM scitq.task_submit_v1('b0', (SELECT jsonb_agg("
                "jsonb_build_object('command', 'true')) FROM generate_series(1, %s)))",
                (min(chunk, tasks - start),),
            )
        conn.execute("SELECT count(*) FROM scitq.task_submit_v1('b1', '[{\"command\": \"true\"}]')")
        worker = conn.execute(
            "SELECT id FROM scitq.worker_register_v1('bench', 'h', '{}', 100000, 0)"
        ).fetchone()
        assert worker is not None
        done, goal = 0, min(tasks // 10, 20_000)
        while done < goal:
            claimed = conn.execute(
                "SELECT execution_id FROM scitq.task_claim_v1(%s, 1000)", (worker[0],)
            ).fetchall()
            results = [{"execution_id": row[0], "return_code": 0} for row in claimed]
            conn.execute(
                "SELECT count(*) FROM scitq.execution_finish_v1(%s, %s::jsonb)",
                (worker[0], json.dumps(results)),
            )
            done += len(claimed)


def bench_size(admin: str, tasks: int) -> list[list[str]]:
    name = f"scitq_bench_progress_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = make_conninfo(admin, dbname=name)
    rows = []
    try:
        migrate.upgrade(conninfo)
        with psycopg.connect(conninfo, autocommit=True) as cached:
            for relation in ("task", "execution", "batch", "task_event", "batch_duration"):
                cached.execute(f"ALTER TABLE scitq.{relation} SET (autovacuum_enabled = false)")
            cached.execute("SELECT scitq.batch_ensure_v1('b0')")
            cached.execute("SET plan_cache_mode = force_generic_plan")
            cached.execute("SET statement_timeout = '120s'")
            cached.execute(f"PREPARE one AS {READ_ONE}")
            cached.execute(f"PREPARE every AS {READ_ALL}")
            cached.execute("EXECUTE one")  # planned now, on empty tables
            cached.execute("EXECUTE every")
            fill(conninfo, tasks)
            with psycopg.connect(conninfo, autocommit=True) as fresh:
                for analyzed in ("never", "analyzed"):
                    if analyzed == "analyzed":
                        fresh.execute("ANALYZE")
                    figures = (
                        timed(fresh, READ_ONE), timed(cached, "EXECUTE one"),
                        timed(fresh, READ_ALL), timed(cached, "EXECUTE every"),
                    )  # fmt: skip
                    rows.append([f"{tasks:,}", analyzed] + [f"{ms:.2f}" for ms in figures])
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a superuser libpq URL (default: embedded server)")
    parser.add_argument("--quick", action="store_true", help="10^3 and 10^4 tasks only")
    args = parser.parse_args(argv)
    sizes = (1_000, 10_000) if args.quick else (1_000, 100_000, 1_000_000)
    with server(args.database_url) as (admin, where):
        print(machine(admin, where), flush=True)
        rows = [row for tasks in sizes for row in bench_size(admin, tasks)]
    title = "scitq.batch_progress read, ms (median of 5): fresh = planned per call, cached = "
    print(table(title + "plan prepared on empty tables", HEADER, rows))


if __name__ == "__main__":
    main()
