"""The agents' side of bench/scale.py: idle simulated agents, the server's CPU and
transactions, PgBouncer, and real agents through it (sections 3 and 4)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_heartbeat, worker_register
from scitq.embedded.server import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]


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
    """``agents`` connections polling the empty batch 'idle'; returns calls and latency,
    and ``polled``: the agents that claimed and heartbeat (each does both at least once)."""

    stop = time.monotonic() + seconds
    latencies: list[float] = []
    calls = polled = 0

    async def agent(index: int) -> None:
        nonlocal calls, polled
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        if not prepare:
            conn.prepare_threshold = None  # PgBouncer transaction pooling
        try:
            worker = await worker_register.run_async(conn, f"idle-{index}", batches=["idle"])
            worker_id = int(worker["id"])
            next_claim = time.monotonic() + random.uniform(0, poll)
            next_beat = time.monotonic() + random.uniform(0, heartbeat)
            claimed = beat = False
            while True:
                now = time.monotonic()
                if now >= stop and claimed and beat:
                    polled += 1
                    return
                if now >= next_claim or (now >= stop and not claimed):
                    claimed = True
                    start = time.perf_counter()
                    await task_claim.run_async(conn, worker_id, 1)
                    latencies.append(time.perf_counter() - start)
                    calls += 1
                    next_claim = now + poll * random.uniform(0.75, 1.25)
                if now >= next_beat or (now >= stop and not beat):
                    beat = True
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
        "polled": polled,
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
