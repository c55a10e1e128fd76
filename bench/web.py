"""Dashboard benchmark: server time of the pages on a big database.

Builds one database with 1,000,000 tasks in 10 batches (a share of them run and
finished, some failed), one task whose attempt wrote a 100 MB log, a few workers; then
times each page through the Flask test client (the whole server side: routing, session,
the user's row, the queries, rendering; no network, no browser). See bench/README.md.

    PYTHONPATH=. python bench/web.py [--database-url URL] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.control_plane import machine, server
from scitq.config import DatabaseSettings, Settings, WebSettings
from scitq.db import migrate
from scitq.db.execution import execution_append_output, execution_finish, execution_set_phase
from scitq.db.task import task_claim, task_executions, task_submit
from scitq.db.web_user import web_user_set
from scitq.db.worker import worker_register
from scitq.web import create_app
from scitq.web import db as web_db
from scitq.web.auth import hash_password

PASSWORD = "bench-password"


@dataclass(frozen=True, slots=True)
class Sizes:
    tasks: int = 1_000_000
    batches: int = 10
    #: Tasks claimed and finished (1 in 10 with exit code 1).
    finished: int = 50_000
    log_bytes: int = 100 * 2**20
    chunk_bytes: int = 64 * 2**10  # the agent's CHUNK_BYTES
    submit_chunk: int = 50_000
    repeats: int = 20


FULL = Sizes()
QUICK = replace(FULL, tasks=100_000, finished=5_000, log_bytes=10 * 2**20, repeats=10)


def _timed(label: str, action: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = action()
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


def _submit(conn: psycopg.Connection[Any], sizes: Sizes) -> None:
    per_batch = sizes.tasks // sizes.batches
    for batch in range(sizes.batches):
        for start in range(0, per_batch, sizes.submit_chunk):
            count = min(sizes.submit_chunk, per_batch - start)
            tasks = [
                {"command": f"align sample{batch}-{start + i}.fq", "name": f"s{batch}-{start + i}"}
                for i in range(count)
            ]
            task_submit(conn, f"batch-{batch}", tasks)


def _finish(conn: psycopg.Connection[Any], sizes: Sizes) -> None:
    worker = int(worker_register(conn, "bench-1", concurrency=1000)["id"])
    done = 0
    while done < sizes.finished:
        claimed = task_claim(conn, worker, min(1000, sizes.finished - done))
        if not claimed:
            break
        results = [
            {"execution_id": c["execution_id"], "return_code": 1 if i % 10 == 0 else 0,
             "wall_seconds": 12.5, "peak_rss_bytes": 2**28}
            for i, c in enumerate(claimed)
        ]  # fmt: skip
        execution_finish(conn, worker, results)
        done += len(claimed)
    for name in ("bench-2", "bench-3"):
        worker_register(conn, name, concurrency=8)


def _big_log(conn: psycopg.Connection[Any], sizes: Sizes) -> int:
    """A running task whose attempt has written ``log_bytes`` of output; its id."""
    [row] = task_submit(conn, "logs", [{"command": "verbose", "name": "big-log"}])
    worker = int(worker_register(conn, "bench-log", batches=["logs"], concurrency=1)["id"])
    [claimed] = task_claim(conn, worker, 1)
    execution = int(claimed["execution_id"])
    execution_set_phase(conn, worker, execution, "running")
    line = "\x1b[32mINFO\x1b[0m processed read 0123456789 of sample <x> ok\n"
    text = (line * (sizes.chunk_bytes // len(line) + 1))[: sizes.chunk_bytes]
    chunks = sizes.log_bytes // sizes.chunk_bytes
    for start in range(0, chunks, 100):
        batch = [(execution, seq, "stdout", text) for seq in range(start, min(chunks, start + 100))]
        execution_append_output(conn, worker, batch)
    return int(row["id"])


def build(conninfo: str, sizes: Sizes) -> tuple[int, int]:
    """Fill the database; returns the big-log task's id and a task id in the middle."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _timed(f"submit {sizes.tasks:,} tasks", lambda: _submit(conn, sizes))
        _timed(f"claim and finish {sizes.finished:,}", lambda: _finish(conn, sizes))
        log_task = _timed(
            f"write a {sizes.log_bytes // 2**20} MB log", lambda: _big_log(conn, sizes)
        )
        web_user_set(conn, "bench", hash_password(PASSWORD), "admin")
        # what autovacuum does to a table this size within minutes
        _timed("vacuum analyze", lambda: conn.execute("VACUUM ANALYZE"))
    return log_task, sizes.tasks // 2


def measure(conninfo: str, sizes: Sizes, log_task: int, middle: int) -> list[list[str]]:
    settings = Settings(
        database=DatabaseSettings(url=conninfo), web=WebSettings(secret_key="b" * 64)
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        login = {"name": "bench", "password": PASSWORD, "csrf_token": token}
        assert client.post("/login", data=login).status_code == 302
        with psycopg.connect(conninfo, autocommit=True) as conn:
            [attempt] = task_executions(conn, log_task)
        execution = attempt.id
        log_chunks = sizes.log_bytes // sizes.chunk_bytes
        htmx = {"HX-Request": "true"}
        pages: list[tuple[str, str, dict[str, str]]] = [
            ("overview", "/", {}),
            ("overview (live fragment)", "/", htmx),
            ("batches", "/batches/", {}),
            ("tasks, first page", "/tasks/", {}),
            ("tasks, page after id " + f"{middle:,}", f"/tasks/?after={middle}", {}),
            ("tasks, batch + status=failed", "/tasks/?batch=batch-0&status=failed", {}),
            ("tasks, status=succeeded", "/tasks/?status=succeeded", {}),
            ("tasks, worker=bench-1", "/tasks/?worker=bench-1", {}),
            ("tasks, name=s3-12345 (one window)", "/tasks/?name=s3-12345", {}),
            ("tasks, batch-3 + name=s3-12345", "/tasks/?batch=batch-3&name=s3-12345", {}),
            (f"task detail, {sizes.log_bytes // 2**20} MB log", f"/tasks/{log_task}", {}),
            ("task summary (poll fragment)", f"/tasks/{log_task}", htmx),
            ("log: earlier output (middle)",
             f"/tasks/{log_task}/log/earlier?execution={execution}&before={log_chunks // 2}",
             htmx),
            ("log: follow (nothing new)",
             f"/tasks/{log_task}/log?execution={execution}&after={log_chunks - 1}", htmx),
            ("task detail, pending task", f"/tasks/{middle}", {}),
            ("workers", "/workers/", {}),
        ]  # fmt: skip
        rows = []
        for label, path, headers in pages:
            times = []
            size = 0
            for _ in range(sizes.repeats + 1):
                started = time.perf_counter()
                response = client.get(path, headers=headers)
                body = response.get_data()
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (path, response.status_code)
                size = len(body)
            times = times[1:]  # the first call warms caches and the pool
            ordered = sorted(times)
            p90 = ordered[int(len(ordered) * 0.9) - 1]
            verdict = "ok" if statistics.median(times) < 200 else "OVER"
            rows.append([label, f"{statistics.median(times):.1f}", f"{p90:.1f}",
                         f"{max(times):.1f}", f"{size / 1024:.0f}", verdict])  # fmt: skip
            print(f"  {label}: median {statistics.median(times):.1f} ms", flush=True)
        return rows
    finally:
        web_db.close(app)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="a superuser URL (default: embedded)")
    parser.add_argument("--quick", action="store_true", help="100,000 tasks and a 10 MB log")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    with server(args.database_url) as (admin, where):
        print(machine(admin, where))
        name = f"scitq_bench_web_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            conninfo = make_conninfo(admin, dbname=name)
            migrate.upgrade(conninfo)
            log_task, middle = build(conninfo, sizes)
            load_before = os.getloadavg()[0]
            rows = measure(conninfo, sizes, log_task, middle)
            load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
            print()
            print(f"server time per page (ms) over {sizes.repeats} requests; "
                  f"{sizes.tasks:,} tasks, {sizes.finished:,} finished, "
                  f"{sizes.log_bytes // 2**20} MB log; {load}; target < 200 ms")  # fmt: skip
            print(table(["page", "median", "p90", "max", "KiB", "< 200"], rows))
            print(json.dumps({"sizes": sizes.__repr__()}))
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
