"""The cost of the task cache on the claim: task_claim_v1 against task_claim_v2 (v1's
claim plus use_cache and the cache candidates), in claims of 10 and of 100 tasks, for
tasks without use_cache and for tasks that all use it and have an earlier success of
their key (the candidates are looked up).

For each case a fresh database with N pending tasks in one batch (analyzed) and one
worker; claims alternate between v1 and v2 until the batch is empty, each finished at
once (execution_finish_v1), so that both see the same tables and the same load. The
figures are the mean claim time of each and the difference per claimed task.

    PYTHONPATH=. python bench/claim_cache.py [--database-url URL] [--tasks N]
"""

from __future__ import annotations

import argparse
import json
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

HEADER = ("tasks use_cache", "limit", "claims each", "v1 ms/claim", "v2 ms/claim", "v2 - v1 ms",
          "v2 - v1 us/task")  # fmt: skip


def run_case(admin: str, tasks: int, limit: int, cached: bool) -> list[str]:
    """Claims alternate between task_claim_v1 and task_claim_v2 on the same database, so
    that both see the same tables and the same load; each claim is finished at once."""
    name = f"scitq_bench_claim_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = make_conninfo(admin, dbname=name)
    try:
        migrate.upgrade(conninfo)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            task = {"command": "true", "output": "s3://b/out/"}
            task |= {"use_cache": True} if cached else {}
            conn.execute(
                "SELECT count(*) FROM scitq.task_submit_v1('b', (SELECT jsonb_agg(%s::jsonb) "
                "FROM generate_series(1, %s)))",
                (json.dumps(task), tasks + 1),
            )
            conn.execute("ANALYZE")
            (worker,) = conn.execute(
                "SELECT id FROM scitq.worker_register_v1('bench', 'h', '{}', 100000, 0)"
            ).fetchone()  # type: ignore[misc]
            if cached:  # earlier successes of the key, recorded as the agent does
                (execution,) = conn.execute(
                    "SELECT execution_id FROM scitq.task_claim_v1(%s, 1)", (worker,)
                ).fetchone()  # type: ignore[misc]
                conn.execute(
                    "SELECT scitq.execution_record_cache_v1(%s, %s, 'f', '{\"x\": 1}')",
                    (worker, execution),
                )
                conn.execute(
                    "SELECT count(*) FROM scitq.execution_finish_v1(%s, %s::jsonb)",
                    (worker, json.dumps([{"execution_id": execution, "return_code": 0}])),
                )
            seconds = {"task_claim_v1": 0.0, "task_claim_v2": 0.0}
            claims = dict.fromkeys(seconds, 0)
            done = 0
            while done < tasks:
                function = "task_claim_v1" if sum(claims.values()) % 2 == 0 else "task_claim_v2"
                claim = sql.SQL("SELECT execution_id FROM scitq.{}(%s, %s)").format(
                    sql.Identifier(function)
                )
                start = time.perf_counter()
                claimed = conn.execute(claim, (worker, limit)).fetchall()
                seconds[function] += time.perf_counter() - start
                claims[function] += 1
                if not claimed:
                    break
                results = [{"execution_id": row[0], "return_code": 0} for row in claimed]
                conn.execute(
                    "SELECT count(*) FROM scitq.execution_finish_v1(%s, %s::jsonb)",
                    (worker, json.dumps(results)),
                )
                done += len(claimed)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    v1, v2 = (seconds[f] / max(claims[f], 1) * 1e3 for f in ("task_claim_v1", "task_claim_v2"))
    return ["all" if cached else "none", str(limit), str(min(claims.values())), f"{v1:.2f}",
            f"{v2:.2f}", f"{v2 - v1:+.2f}", f"{(v2 - v1) * 1e3 / limit:+.0f}"]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a superuser libpq URL (default: embedded server)")
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args(argv)
    cases = [(10, False), (100, False), (10, True), (100, True)]
    with server(args.database_url) as (admin, where):
        print(machine(admin, where), flush=True)
        rows = [run_case(admin, args.tasks, *case) for case in cases]
    print(table("claim time with and without the task cache", HEADER, rows))


if __name__ == "__main__":
    main()
