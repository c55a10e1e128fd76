"""Scale: a database of 10^6 tasks, and many idle agents.

1. Fill: ``--tasks`` tasks (10^6) in ``--chunk`` calls of task_submit_v1 over 20 batches;
   then 20,000 of them claimed and finished with output, so that statuses are mixed.
2. At that size: one more submit chunk, claim latency (a worker of one batch, a worker of
   every batch), ``scitq task list`` (first page and filtered pages, in-process),
   scitq.batch_progress and ``scitq batch list``, dashboard pages (Flask test client).
3. ``--agents`` simulated idle agents (asyncio connections) that poll an empty batch as an
   idle agent does at its longest interval (task_claim_v1 every ``--poll`` s and
   worker_heartbeat_v1 every ``--heartbeat`` s, phases spread): the database's CPU (from
   /proc, for the embedded server's processes) and transactions per second.
4. With Debian's ``pgbouncer`` on PATH: the same agents through PgBouncer in transaction
   pooling, and real ``scitq agent --no-listen`` processes running tasks through it.

5. ``--large``: the 10^7-task, 10^7-output-row run of bench/scale_large.py (by hand,
   never in CI; its options follow).

    python bench/scale.py [--database-url URL] [--quick]
    python bench/scale.py --large [--tasks N] [--executions N] [--lines N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from scale_agents import measure_idle, pgbouncer, real_agents_through, tcp_target  # bench/

from scitq.db import migrate
from scitq.db.execution import execution_append_output, execution_finish
from scitq.db.task import task_claim, task_submit
from scitq.db.web_user import web_user_set
from scitq.db.worker import worker_register
from scitq.embedded.server import EmbeddedServer

BATCHES = 20


def median_ms(action: Callable[[], Any], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@contextmanager
def server(url: str | None) -> Iterator[tuple[str, EmbeddedServer | None]]:
    """A superuser conninfo (maintenance database) and the embedded server, if ours."""
    if url is not None:
        yield url, None
        return
    data_dir = Path(tempfile.mkdtemp(prefix="scitq-scale-", dir="/tmp"))
    data_dir.chmod(0o755)
    embedded = EmbeddedServer(data_dir)
    try:
        conninfo = embedded.ensure_running()
        with psycopg.connect(conninfo, autocommit=True) as conn:  # room for the agents
            conn.execute("ALTER SYSTEM SET max_connections = 400")
        embedded.stop()
        conninfo = embedded.ensure_running()
        yield make_conninfo(conninfo, dbname="postgres"), embedded
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# -- 1. fill -------------------------------------------------------------------------


def fill(conn: psycopg.Connection[Any], total: int, chunk: int) -> dict[str, Any]:
    seconds = []
    for offset in range(0, total, chunk):
        count = min(chunk, total - offset)
        specs = [
            {"command": f"echo {i}", "name": f"t{i}", "tags": ["scale"]}
            for i in range(offset, offset + count)
        ]
        start = time.perf_counter()
        task_submit(conn, f"b{(offset // chunk) % BATCHES}", specs)
        seconds.append(time.perf_counter() - start)
        print(f"  submitted {offset + count:>9,} ({count / seconds[-1]:,.0f} tasks/s)", flush=True)
    worker = worker_register(conn, "w-fill", concurrency=1000)["id"]
    done = 0
    while done < min(20_000, total // 10):
        claimed = task_claim(conn, worker, 1000)
        chunks = [(c["execution_id"], 0, "stdout", f"task {c['task_id']} done\n") for c in claimed]
        execution_append_output(conn, worker, chunks)
        results = [
            {"execution_id": c["execution_id"], "return_code": i % 10 == 0}
            for i, c in enumerate(claimed)
        ]
        execution_finish(
            conn, worker, [{**r, "return_code": int(r["return_code"])} for r in results]
        )
        done += len(claimed)
    conn.execute("ANALYZE")
    return {
        "tasks": total,
        "seconds": sum(seconds),
        "rate": total / sum(seconds),
        "first_chunk_rate": chunk / seconds[0],
        "last_chunk_rate": chunk / seconds[-1],
        "finished": done,
    }


# -- 2. at 10^6 ----------------------------------------------------------------------


def at_size(conn: psycopg.Connection[Any], db: str, chunk: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    specs = [{"command": f"echo more {i}"} for i in range(chunk)]
    start = time.perf_counter()
    task_submit(conn, "b-more", specs)
    figures["submit one more chunk (s)"] = time.perf_counter() - start

    for label, batches in (("1 batch", ["b1"]), (f"{BATCHES + 1} batches (all)", None)):
        worker = worker_register(
            conn, f"w-claim-{len(figures)}", batches=batches, concurrency=100_000
        )["id"]
        latencies = []
        for _ in range(200):
            start = time.perf_counter()
            task_claim(conn, worker, 10)
            latencies.append((time.perf_counter() - start) * 1000)
        latencies.sort()
        figures[f"claim 10, worker of {label}: p50 (ms)"] = latencies[100]
        figures[f"claim 10, worker of {label}: p95 (ms)"] = latencies[190]

    from scitq.cli import scitq

    def cli(*args: str) -> Callable[[], None]:
        def run() -> None:
            result = CliRunner().invoke(scitq, ["--database-url", db, *args])
            assert result.exit_code == 0, result.output

        return run

    for label, args in [
        ("task list (first page)", ["task", "list"]),
        ("task list --batch b1", ["task", "list", "--batch", "b1"]),
        ("task list --status succeeded", ["task", "list", "--status", "succeeded"]),
        ("task list --status failed --batch b0", ["task", "list", "-s", "failed", "-b", "b0"]),
        ("task list --name 't12345%'", ["task", "list", "--name", "t12345%"]),
        ("task list --name 'nomatch%' (no match)", ["task", "list", "--name", "nomatch%"]),
        ("task list --worker w-fill", ["task", "list", "--worker", "w-fill"]),
        ("task list --after 900000", ["task", "list", "--after", "900000"]),
        ("task list --since 1h --json", ["task", "list", "--since", "1h", "--json"]),
        ("batch list", ["batch", "list"]),
        ("worker list", ["worker", "list"]),
    ]:
        figures[f"scitq {label} (ms)"] = median_ms(cli(*args))
    figures["SELECT * FROM scitq.batch_progress (ms)"] = median_ms(
        lambda: conn.execute("SELECT * FROM scitq.batch_progress").fetchall()
    )
    figures["batch_progress of one batch (ms)"] = median_ms(
        lambda: conn.execute("SELECT * FROM scitq.batch_progress WHERE batch = 'b1'").fetchall()
    )
    figures.update(dashboard(conn, db))
    return figures


def dashboard(conn: psycopg.Connection[Any], db: str) -> dict[str, float]:
    try:
        from scitq.config import DatabaseSettings, Settings, WebSettings
        from scitq.web import create_app
        from scitq.web import db as web_db
        from scitq.web.auth import hash_password
    except ImportError:
        return {}
    web_user_set(conn, "bench", hash_password("bench-password"), "admin")
    settings = Settings(
        database=DatabaseSettings(url=db), web=WebSettings(secret_key="k" * 64, threads=2)
    )
    app = create_app(settings, TESTING=True)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    client.post("/login", data={"name": "bench", "password": "bench-password", "csrf_token": token})
    figures = {}
    for path in [
        "/",
        "/batches/",
        "/tasks/",
        "/tasks/?batch=b1",
        "/tasks/?status=failed",
        "/tasks/?name=t12345",
        "/workers/",
        "/tasks/1",
    ]:

        def get(path: str = path) -> None:
            assert client.get(path).status_code == 200, path

        figures[f"dashboard GET {path} (ms)"] = median_ms(get)
    web_db.close(app)
    return figures


def print_table(title: str, figures: dict[str, Any]) -> None:
    print(f"\n{title}\n")
    print("| measure | value |\n|---|---|")
    for key, value in figures.items():
        shown = f"{value:,.1f}" if isinstance(value, float) else f"{value}"
        print(f"| {key} | {shown} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a superuser libpq URL (default: embedded)")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--poll", type=float, default=10.0, help="idle claim interval (s)")
    parser.add_argument("--heartbeat", type=float, default=10.0, help="idle heartbeat (s)")
    parser.add_argument("--quick", action="store_true", help="100,000 tasks, 20 s idle runs")
    parser.add_argument(
        "--large",
        action="store_true",
        help="the 10^7 run instead (bench/scale_large.py; its own options)",
    )
    args, rest = parser.parse_known_args()
    if args.large:  # by hand only: about half an hour on 2 cores
        import scale_large

        sys.argv = [sys.argv[0], *rest]
        scale_large.main()
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.quick:
        args.tasks, args.idle_seconds = 100_000, 20.0
    print(f"scale bench {date.today()} on {os.cpu_count()} cores, load {os.getloadavg()}")
    with server(args.database_url) as (admin, embedded):
        name = f"scitq_scale_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        db = make_conninfo(admin, dbname=name)
        work = Path(tempfile.mkdtemp(prefix="scitq-scale-work-"))
        try:
            migrate.upgrade(db)
            with psycopg.connect(db, autocommit=True) as conn:
                print(f"1. fill {args.tasks:,} tasks in chunks of {args.chunk:,}")
                print_table("1. fill", fill(conn, args.tasks, args.chunk))
                print_table(f"2. at {args.tasks:,} tasks", at_size(conn, db, args.chunk))
            for poll in (args.poll, 1.0):
                print_table(
                    f"3. {args.agents} idle agents, claim every {poll} s, "
                    f"heartbeat every {args.heartbeat} s, {args.idle_seconds} s",
                    measure_idle(
                        db, db, embedded, args.agents, args.idle_seconds, poll, args.heartbeat
                    ),
                )
            target, db = tcp_target(db, embedded)
            admin = make_conninfo(db, dbname=conninfo_to_dict(admin).get("dbname", "postgres"))
            with pgbouncer(target, work) as bouncer:
                if bouncer is None:
                    print("\n4. pgbouncer: not installed, skipped")
                else:
                    print_table(
                        f"4a. the same {args.agents} agents through PgBouncer (transaction "
                        "pooling, pool of 10), claim every 1 s",
                        measure_idle(
                            db,
                            bouncer,
                            embedded,
                            args.agents,
                            args.idle_seconds,
                            1.0,
                            args.heartbeat,
                            prepare=False,
                        ),
                    )
                    print_table(
                        "4b. real agents (--no-listen) through PgBouncer",
                        real_agents_through(bouncer, db, work, 4, 400),
                    )
        finally:
            shutil.rmtree(work, ignore_errors=True)
            with psycopg.connect(admin, autocommit=True) as conn:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
