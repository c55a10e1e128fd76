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

    python bench/scale.py [--database-url URL] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import psutil
import psycopg
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from scitq.db import migrate
from scitq.db.execution import execution_append_output, execution_finish
from scitq.db.task import task_claim, task_submit
from scitq.db.web_user import web_user_set
from scitq.db.worker import worker_heartbeat, worker_register
from scitq.embedded.server import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]
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


def server_cpu_seconds(embedded: EmbeddedServer | None) -> float | None:
    """User + system CPU of the server's processes (postmaster and backends)."""
    if embedded is None:
        return None
    status = embedded.status()
    if status.pid is None:
        return None
    root = psutil.Process(status.pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            continue
    return total


def commits(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database"
        " WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(row[0])


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


# -- 3. idle agents --------------------------------------------------------------------


async def idle_agents(
    conninfo: str,
    direct: str,
    agents: int,
    seconds: float,
    poll: float,
    heartbeat: float,
    prepare: bool = True,
) -> dict[str, float]:
    """``agents`` connections polling the empty batch 'idle'; returns calls and latency."""

    stop = time.monotonic() + seconds
    latencies: list[float] = []
    calls = 0

    async def agent(index: int) -> None:
        nonlocal calls
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        if not prepare:
            conn.prepare_threshold = None  # PgBouncer transaction pooling
        try:
            worker = await worker_register.run_async(conn, f"idle-{index}", batches=["idle"])
            worker_id = int(worker["id"])
            next_claim = time.monotonic() + random.uniform(0, poll)
            next_beat = time.monotonic() + random.uniform(0, heartbeat)
            while True:
                now = time.monotonic()
                if now >= stop:
                    return
                if now >= next_claim:
                    start = time.perf_counter()
                    await task_claim.run_async(conn, worker_id, 1)
                    latencies.append(time.perf_counter() - start)
                    calls += 1
                    next_claim = now + poll * random.uniform(0.75, 1.25)
                if now >= next_beat:
                    start = time.perf_counter()
                    await worker_heartbeat.run_async(conn, worker_id, [])
                    latencies.append(time.perf_counter() - start)
                    calls += 1
                    next_beat = now + heartbeat
                await asyncio.sleep(max(0.0, min(next_claim, next_beat, stop) - time.monotonic()))
        finally:
            await conn.close()

    async def monitor() -> None:
        async with await psycopg.AsyncConnection.connect(direct, autocommit=True) as conn:
            while time.monotonic() < stop - 1:
                await asyncio.sleep(min(5.0, seconds / 3))
                cursor = await conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                )
                row = await cursor.fetchone()
                backends.append(int(row[0]) if row else 0)

    backends: list[int] = []
    await asyncio.gather(monitor(), *(agent(i) for i in range(agents)))
    latencies.sort()
    return {
        "backends": max(backends, default=0),
        "calls": calls,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else 0.0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
    }


def measure_idle(
    db: str,
    client_conninfo: str,
    embedded: EmbeddedServer | None,
    agents: int,
    seconds: float,
    poll: float,
    heartbeat: float,
    prepare: bool = True,
) -> dict[str, float]:
    with psycopg.connect(db, autocommit=True) as conn:
        before_tx, before_cpu = commits(conn), server_cpu_seconds(embedded)
        client = psutil.Process()
        client_before = sum(client.cpu_times()[:2])
        start = time.monotonic()
        calls = asyncio.run(
            idle_agents(client_conninfo, db, agents, seconds, poll, heartbeat, prepare)
        )
        wall = time.monotonic() - start
        after_tx, after_cpu = commits(conn), server_cpu_seconds(embedded)
    figures = {
        "agents": agents,
        "poll (s)": poll,
        "heartbeat (s)": heartbeat,
        "calls/s (client)": calls["calls"] / wall,
        "transactions/s (server)": (after_tx - before_tx) / wall,
        "call p50 (ms)": calls["p50_ms"],
        "call p99 (ms)": calls["p99_ms"],
        "client CPU (% of a core)": 100 * (sum(client.cpu_times()[:2]) - client_before) / wall,
    }
    if before_cpu is not None and after_cpu is not None:
        figures["server CPU (% of a core)"] = 100 * (after_cpu - before_cpu) / wall
    figures["server connections to the database (max seen)"] = calls["backends"]
    return figures


# -- 4. PgBouncer ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tcp_target(db: str, embedded: EmbeddedServer | None) -> tuple[dict[str, str], str]:
    """Where PgBouncer reaches the server (the embedded one is made to listen on TCP),
    and the direct conninfo afterwards (its socket is named after the new port)."""
    params = {k: str(v) for k, v in conninfo_to_dict(db).items()}
    if embedded is not None:
        password = uuid.uuid4().hex
        port = free_port()
        embedded.serve("127.0.0.1", port, password)
        db = make_conninfo(db, port=str(port))
        params.update(host="127.0.0.1", port=str(port), user="postgres", password=password)
    return params, db


@contextmanager
def pgbouncer(target: dict[str, str], work: Path) -> Iterator[str | None]:
    """A transaction-pooling PgBouncer in front of ``target``; yields its conninfo."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        yield None
        return
    port = free_port()
    keys = ("host", "port", "dbname", "user", "password")
    line = " ".join(f"{key}={target[key]}" for key in keys if target.get(key))
    (work / "pgbouncer.ini").write_text(
        f"[databases]\nscale = {line}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
        f"listen_port = {port}\nunix_socket_dir =\nauth_type = any\npool_mode = transaction\n"
        "default_pool_size = 10\nmax_client_conn = 1000\nlogfile = "
        f"{work / 'pgbouncer.log'}\npidfile = {work / 'pgbouncer.pid'}\n"
    )
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    os.chmod(work, 0o777)
    process = subprocess.Popen(
        [binary, *user, str(work / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"host=127.0.0.1 port={port} dbname=scale user={target.get('user', 'postgres')}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def real_agents_through(
    bouncer: str, db: str, work: Path, agents: int, tasks: int
) -> dict[str, Any]:
    """``scitq agent --no-listen --drain`` processes through PgBouncer run ``tasks`` tasks."""
    with psycopg.connect(db, autocommit=True) as conn:
        task_submit(conn, "through-bouncer", [{"command": "true"}] * tasks)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
        env["PYTHONPATH"] = str(ROOT)
        start = time.monotonic()
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scitq",
                    "--database-url",
                    bouncer,
                    "agent",
                    "--no-listen",
                    "--drain",
                    "-b",
                    "through-bouncer",
                    "-c",
                    "4",
                    "--name",
                    f"bouncer-{i}",
                    "--work-dir",
                    str(work / f"agent-{i}"),
                    "--poll-max",
                    "1",
                ],
                stdout=(work / f"agent-{i}.log").open("wb"),
                stderr=subprocess.STDOUT,
                env=env,
            )
            for i in range(agents)
        ]
        codes = []
        for process in processes:
            try:
                codes.append(process.wait(timeout=300))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        wall = time.monotonic() - start
        succeeded = conn.execute(
            "SELECT count(*) FROM scitq.task t JOIN scitq.batch b ON b.id = t.batch_id "
            "WHERE b.name = 'through-bouncer' AND t.status = 'succeeded'"
        ).fetchone()
    errors = [
        line
        for i in range(agents)
        for line in (work / f"agent-{i}.log").read_text(errors="replace").splitlines()
        if "rror" in line
    ]
    return {
        "agents": agents,
        "tasks": tasks,
        "succeeded": succeeded[0] if succeeded else 0,
        "exit codes": codes,
        "wall (s)": round(wall, 1),
        "first error lines": errors[:3],
    }


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
    args = parser.parse_args()
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
