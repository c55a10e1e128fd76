"""Agent benchmarks: `true` tasks end to end, idle-to-start latency, output capture.

Agents are real ``python -m scitq agent`` processes; the script submits tasks and reads
the timestamps the database recorded. Each measurement gets a fresh clone of a migrated
database (with PL/pgSQL call counts on), all dropped at the end; the server and database
helpers are control_plane.py's. See bench/README.md.

    python bench/agent.py [--database-url URL] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil
import psycopg
from control_plane import Databases, machine, server, table  # run as bench/agent.py
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from scitq.db.task import task_submit

Conn = psycopg.Connection[Any]
PROTOCOL = ("task_claim_v1", "execution_set_phase_v2", "execution_finish_v1")
OTHER = ("execution_append_output_v1", "worker_heartbeat_v1", "worker_register_v1",
         "worker_stop_v1")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Sizes:
    tasks: int = 2_000
    layouts: tuple[tuple[int, int], ...] = ((1, 8), (4, 8), (4, 2))  # agents, concurrency
    latency_pairs: int = 10  # databases, each with a listening and a polling agent
    latency_rounds: int = 3  # one sample per agent per round
    backoff_wait: float = 21.0  # 0.5 + 1 + 2 + 4 + 8 s (+25 % jitter): at --poll-max 10
    output_bytes: tuple[int, ...] = (32 * 2**20, 300 * 2**20)


FULL = Sizes()
QUICK = replace(FULL, tasks=300, layouts=((1, 8), (4, 8)), latency_rounds=1,
                output_bytes=(32 * 2**20, 100 * 2**20))  # fmt: skip


def fresh(dbs: Databases) -> str:
    """A clone of the migrated database that counts calls of PL/pgSQL functions."""
    url = dbs.fresh()
    track = sql.SQL("ALTER DATABASE {} SET track_functions = 'pl'")
    with psycopg.connect(dbs.admin, autocommit=True) as conn:
        conn.execute(track.format(sql.Identifier(str(conninfo_to_dict(url)["dbname"]))))
    return url


class Agents:
    """``scitq agent`` processes, each with its own work dir and log file in ``work``."""

    def __init__(self, work: Path) -> None:
        self.work, self.procs = work, list[subprocess.Popen[bytes]]()
        path = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}

    def start(self, db: str, name: str, batch: str, concurrency: int, *extra: str) -> None:
        command = [sys.executable, "-m", "scitq", "--database-url", db, "agent", "-b", batch,
                   "-c", str(concurrency), "--name", name, "--work-dir",
                   str(self.work / name), *extra]  # fmt: skip
        with (self.work / f"{name}.log").open("wb") as log:
            self.procs.append(subprocess.Popen(command, stdout=log, stderr=log, env=self.env))

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []


def cpu_seconds(pids: Sequence[int]) -> float | None:
    """User + system CPU of these processes (not their children); None if not visible."""
    try:
        return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)
    except psutil.Error:
        return None


def wait_until(
    conn: Conn, query: str, params: Sequence[Any], seconds: float, every: float = 0.02
) -> None:
    """Poll ``query`` (one boolean) until it is true; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not conn.execute(query, params).fetchone()[0]:  # type: ignore[index]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {seconds:.0f} s waiting for: {query}")
        time.sleep(every)


def pct(values: Sequence[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


REGISTERED = "SELECT count(*) >= %s FROM scitq.worker"


# -- 1. throughput ------------------------------------------------------------------------


async def bare_spawn(count: int, width: int) -> float:
    """``true`` run ``count`` times, ``width`` at a time, output piped: tasks/s."""
    gate = asyncio.Semaphore(width)

    async def one() -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec(
                "true", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            await proc.communicate()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - start)


def bench_throughput(dbs: Databases, sizes: Sizes, work: Path) -> list[list[str]]:
    rows, n = [], sizes.tasks
    for agents, concurrency in sizes.layouts:
        db, runner = fresh(dbs), Agents(work)
        with psycopg.connect(db, autocommit=True) as conn:
            try:
                for i in range(agents):
                    runner.start(db, f"tp-{agents}x{concurrency}-{i}", "tp", concurrency)
                wait_until(conn, REGISTERED, (agents,), 60)
                time.sleep(1.0)  # past start-up: every agent waits in its claim loop
                others = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                backends = [pid for (pid,) in conn.execute(others) if pid != conn.info.backend_pid]
                agents_before = cpu_seconds([p.pid for p in runner.procs])
                backends_before = {pid: cpu_seconds([pid]) for pid in backends}
                task_submit(conn, "tp", [{"command": "true", "shell": False}] * n)
                done = "SELECT count(*) = %s FROM scitq.task WHERE status = 'succeeded'"
                wait_until(conn, done, (n,), 600, every=0.1)  # timed by the database
                agents_after = cpu_seconds([p.pid for p in runner.procs])
                # backends opened meanwhile (an agent's report connection opens on first
                # use) count from zero
                backends = [pid for (pid,) in conn.execute(others) if pid != conn.info.backend_pid]
                used = [(cpu_seconds([pid]), backends_before.get(pid, 0.0)) for pid in backends]
                before = [agents_before, 0.0]
                after = [agents_after, sum((a or 0.0) - (b or 0.0) for a, b in used)]
                seconds = conn.execute(
                    "SELECT extract(epoch FROM (SELECT max(finished_at) FROM scitq.execution)"
                    " - (SELECT min(created_at) FROM scitq.task))::float"
                ).fetchone()[0]  # type: ignore[index]
            finally:
                runner.stop()  # the backends' call counts are flushed when they exit
        with psycopg.connect(db) as conn:
            query = "SELECT funcname, calls FROM pg_stat_user_functions WHERE schemaname = 'scitq'"
            calls: dict[str, int] = dict(conn.execute(query).fetchall())
        trips = [calls.get(name, 0) / n for name in PROTOCOL]
        trips.append(sum(calls.get(name, 0) for name in OTHER) / n)
        cpu = ["-" if b is None or a is None else f"{(a - b) * 1e3 / n:.2f}"
               for b, a in zip(before, after, strict=True)]  # fmt: skip
        rows.append([f"{agents} x {concurrency}", f"{n:,}", f"{seconds:.2f}", f"{n / seconds:,.0f}"]
                    + [f"{x:.2f}" for x in (*trips, sum(trips))] + cpu)  # fmt: skip
    cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    bare = asyncio.run(bare_spawn(n, 8))
    spent = (sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu0) * 1e3 / n
    rows.append(["bare asyncio, 8", f"{n:,}", f"{n / bare:.2f}", f"{bare:,.0f}"] + ["-"] * 5
                + [f"{spent:.2f}", "-"])  # fmt: skip
    return rows


# -- 2. idle-to-start latency -------------------------------------------------------------


def bench_latency(dbs: Databases, sizes: Sizes, work: Path) -> list[list[str]]:
    """Per database a listening agent (batch ``n``) and a polling one (``p``), idle."""
    urls = [fresh(dbs) for _ in range(sizes.latency_pairs)]
    runner, poll = Agents(work), ("--poll-min", "0.5", "--poll-max", "10")
    samples: dict[str, list[tuple[float, float]]] = {"n": [], "p": []}
    conns = [psycopg.connect(url, autocommit=True) for url in urls]
    try:
        for i, url in enumerate(urls):
            runner.start(url, f"lat-n-{i}", "n", 1, *poll)
            runner.start(url, f"lat-p-{i}", "p", 1, "--no-listen", *poll)
        for conn in conns:
            wait_until(conn, REGISTERED, (2,), 60)
        for _ in range(sizes.latency_rounds):
            time.sleep(sizes.backoff_wait)
            for batch in ("n", "p"):
                submitted, began = [], time.monotonic()
                # polling: each agent's phase in its poll period at random
                offsets = sorted(random.uniform(0, 10) for _ in conns) if batch == "p" else []
                for i, conn in enumerate(conns):
                    if offsets:
                        time.sleep(max(0.0, began + offsets[i] - time.monotonic()))
                    with conn.transaction():  # the clock read last before the commit
                        task_id = task_submit(conn, batch, [{"command": "true"}])[0]["id"]
                        at = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
                    submitted.append((task_id, at))
                    if batch == "n":  # one at a time: each wake-up alone on the CPUs
                        started(conn, task_id, 5)
                        time.sleep(0.2)
                for conn, (task_id, at) in zip(conns, submitted, strict=True):
                    assigned, running = started(conn, task_id, 25)
                    samples[batch].append(((assigned - at).total_seconds(),
                                           (running - at).total_seconds()))  # fmt: skip
    finally:
        for conn in conns:
            conn.close()
        runner.stop()
    rows = []
    for batch, mode in (("n", "NOTIFY"), ("p", "--no-listen")):
        claim, run = ([sample[i] * 1e3 for sample in samples[batch]] for i in (0, 1))
        figures = (pct(claim, 50), pct(claim, 95), pct(run, 50), pct(run, 95), max(run))
        rows.append([mode, f"{len(claim)}"] + [f"{value:,.1f}" for value in figures])
    return rows


def started(conn: Conn, task_id: int, seconds: float) -> tuple[Any, Any]:
    query = "SELECT assigned_at, run_started_at FROM scitq.execution WHERE task_id = %s"
    wait_until(conn, f"SELECT EXISTS ({query} AND run_started_at IS NOT NULL)", (task_id,), seconds)
    return conn.execute(query, (task_id,)).fetchone()  # type: ignore[return-value]


# -- 3. output capture --------------------------------------------------------------------


def output_command(size: int) -> str:
    return f"yes {'a' * 99} | head -c {size}"  # lines of 100 bytes


def bare_read(size: int) -> float:
    """MB/s of reading the same command's pipe in 64 KiB reads, the bytes thrown away."""
    start = time.perf_counter()
    with subprocess.Popen(["/bin/sh", "-c", output_command(size)], stdout=subprocess.PIPE) as proc:
        while os.read(proc.stdout.fileno(), 64 * 2**10):  # type: ignore[union-attr]
            pass
    return size / 1e6 / (time.perf_counter() - start)


def bench_output(dbs: Databases, sizes: Sizes, work: Path) -> list[list[str]]:
    db, runner, rows = fresh(dbs), Agents(work), []
    with psycopg.connect(db, autocommit=True) as conn:
        try:
            runner.start(db, "out", "out", 1)
            wait_until(conn, REGISTERED, (1,), 60)
            for size in sizes.output_bytes:
                spec = {"command": output_command(size), "shell": True}
                task_id = task_submit(conn, "out", [spec])[0]["id"]
                done = "SELECT status = 'succeeded' FROM scitq.task WHERE id = %s"
                wait_until(conn, done, (task_id,), 300)
                wall, seconds, stored, chunks = conn.execute(
                    "SELECT e.wall_seconds, extract(epoch FROM e.finished_at - e.run_started_at)"
                    "::float, sum(octet_length(o.text)), count(*) FROM scitq.execution e"
                    " JOIN scitq.execution_output o ON o.execution_id = e.id"
                    " WHERE e.task_id = %s GROUP BY e.id",
                    (task_id,),
                ).fetchone()  # type: ignore[misc]
                rows.append(
                    [f"{size / 2**20:,.0f} MiB", f"{bare_read(size):,.0f}", f"{wall:.2f}",
                     f"{size / 1e6 / wall:,.0f}", f"{stored / 2**20:,.1f} MiB", f"{chunks}",
                     f"{seconds:.2f}", f"{size / 1e6 / seconds:,.0f}",
                     f"{stored / 1e6 / seconds:,.0f}"]
                )  # fmt: skip
        finally:
            runner.stop()
    return rows


# -- report -------------------------------------------------------------------------------


THROUGHPUT = "1. {:,} `true` tasks, submit to all succeeded (target >= 1,000 tasks/s, 2x bare)"
THROUGHPUT_HEADER = ("agents x conc", "tasks", "seconds", "tasks/s", "claim/task", "phase/task",
                     "finish/task", "other/task", "trips/task", "agent CPU ms/task",
                     "PG CPU ms/task")  # fmt: skip
LATENCY = (
    "2. idle agent (--poll-max 10) to its task, ms after the submit (target NOTIFY p50 <= 100)"
)
LATENCY_HEADER = ("mode", "samples", "assigned p50", "assigned p95", "running p50",
                  "running p95", "running max")  # fmt: skip
OUTPUT = "3. one task writing 100-byte lines to stdout (target >= 50 MB/s; MB = 10^6 bytes)"
OUTPUT_HEADER = ("output", "bare read MB/s", "task wall s", "pipe MB/s", "stored", "rows",
                 "run->finished s", "output MB/s", "stored MB/s")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a superuser libpq URL (default: embedded server)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="scitq-agent-bench-"))
    with server(args.database_url) as (admin, where):
        print(machine(admin, where), flush=True)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"load average {load}; Python {sys.version.split()[0]}", flush=True)
        dbs = Databases(admin)
        try:
            rows = bench_throughput(dbs, sizes, work)
            print(table(THROUGHPUT.format(sizes.tasks), THROUGHPUT_HEADER, rows), flush=True)
            print(table(LATENCY, LATENCY_HEADER, bench_latency(dbs, sizes, work)), flush=True)
            print(table(OUTPUT, OUTPUT_HEADER, bench_output(dbs, sizes, work)), flush=True)
        except BaseException:
            print(f"agent logs kept in {work}", file=sys.stderr)
            raise
        else:
            shutil.rmtree(work, ignore_errors=True)
        finally:
            dbs.drop_all()
    print(f"\ntotal run time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
