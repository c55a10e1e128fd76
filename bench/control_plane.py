"""Control-plane benchmarks: bulk submit, claim + finish throughput, claim cost vs depth.

Every figure goes through the typed wrappers of `scitq.db` (task, worker, execution), as
the CLI and the agents do. Each benchmark runs in a fresh clone of a freshly migrated
database; all are dropped at the end. See bench/README.md for what is measured and how to read it.

    python bench/control_plane.py [--database-url URL] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from itertools import accumulate
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from scitq.db import migrate
from scitq.db.connection import connect
from scitq.db.execution import execution_finish
from scitq.db.query import Connection, Row
from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_register
from scitq.embedded.server import EmbeddedServer

Task = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Sizes:
    submit_total: int = 100_000
    submit_chunks: tuple[int, ...] = (5_000, 10_000)
    claim_tasks: int = 20_000
    claimers: tuple[int, ...] = (1, 2, 4, 8)
    claim_size: int = 100
    depths: tuple[int, ...] = (1_000, 1_000_000)
    depth_claims: int = 300
    cold_claims: int = 50  # each costs O(depth) with the bad plan: keep the run short
    latency_limit: int = 10
    setup_chunk: int = 50_000


FULL = Sizes()
QUICK = replace(
    FULL, submit_total=10_000, claim_tasks=2_000, depths=(1_000, 100_000), depth_claims=50,
    cold_claims=20,
)  # fmt: skip


def tasks(offset: int, count: int) -> list[Task]:
    return [{"command": f"echo {i}", "name": f"t{i}"} for i in range(offset, offset + count)]


def submit(conn: Connection, batch: str, total: int, chunk: int) -> float:
    """Submit ``total`` tasks in calls of ``chunk``; return the seconds spent in calls."""
    spent = 0.0
    for offset in range(0, total, chunk):
        specs = tasks(offset, min(chunk, total - offset))
        start = time.perf_counter()
        task_submit(conn, batch, specs)
        spent += time.perf_counter() - start
    return spent


def finish_all(conn: Connection, worker_id: int, claimed: Sequence[Row]) -> None:
    results = [{"execution_id": row["execution_id"], "return_code": 0} for row in claimed]
    execution_finish(conn, worker_id, results)


def p95(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=20)[18]


# -- servers and databases ---------------------------------------------------------------


@contextmanager
def server(url: str | None) -> Iterator[tuple[str, str]]:
    """Yield a superuser conninfo to a maintenance database and a description."""
    if url is not None:
        params = conninfo_to_dict(url)
        where = f"{params.get('host', 'local socket')}:{params.get('port', 5432)}"
        yield url, f"URL (host {where})"
        return
    # /tmp itself: as root the server runs as scitq-pg, which must traverse the path
    data_dir = Path(tempfile.mkdtemp(prefix="scitq-bench-", dir="/tmp"))
    data_dir.chmod(0o755)
    embedded = EmbeddedServer(data_dir)
    try:
        conninfo = embedded.ensure_running()
        yield make_conninfo(conninfo, dbname="postgres"), f"embedded ({data_dir})"
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


class Databases:
    """A database migrated once, cloned (CREATE DATABASE ... TEMPLATE) per benchmark."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.prefix = f"scitq_bench_{uuid.uuid4().hex[:8]}"
        self.names: list[str] = []
        self.template = self._create(sql.SQL(""))
        migrate.upgrade(make_conninfo(admin, dbname=self.template))

    def fresh(self) -> str:
        name = self._create(sql.SQL(" TEMPLATE {}").format(sql.Identifier(self.template)))
        return make_conninfo(self.admin, dbname=name)

    def drop_all(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in reversed(self.names):
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))

    def _create(self, suffix: sql.Composable) -> str:
        name = f"{self.prefix}_{len(self.names)}"
        self.names.append(name)
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)) + suffix)
        return name


# -- benchmarks -----------------------------------------------------------------------------


def bench_submit(dbs: Databases, sizes: Sizes) -> list[list[str]]:
    rows = []
    for chunk in sizes.submit_chunks:
        with connect(dbs.fresh()) as conn:
            spent = submit(conn, "submit", sizes.submit_total, chunk)
        calls = -(-sizes.submit_total // chunk)
        rate = sizes.submit_total / spent
        rows.append([f"{chunk:,}", f"{calls}", f"{spent * 1000 / calls:.0f}", f"{rate:,.0f}"])
    return rows


def claim_loop(db: str, index: int, size: int, start: threading.Barrier) -> list[tuple[float, int]]:
    """One claimer: claim ``size``, finish them all, until nothing is left.

    Returns one ``(end time, tasks finished)`` per call (0 for a claim).
    """
    with connect(db) as conn:
        worker = worker_register(conn, f"claimer-{index}", concurrency=size)
        start.wait()
        calls = []
        while claimed := task_claim(conn, worker["id"], size):
            calls.append((time.perf_counter(), 0))
            finish_all(conn, worker["id"], claimed)
            calls.append((time.perf_counter(), len(claimed)))
        calls.append((time.perf_counter(), 0))
        return calls


def bench_claim_finish(dbs: Databases, sizes: Sizes) -> list[list[str]]:
    rows = []
    for claimers in sizes.claimers:
        db = dbs.fresh()
        with connect(db) as conn:
            submit(conn, "claim", sizes.claim_tasks, 5_000)
        start = threading.Barrier(claimers + 1)
        with ThreadPoolExecutor(claimers) as pool:
            futures = [
                pool.submit(claim_loop, db, i, sizes.claim_size, start) for i in range(claimers)
            ]
            start.wait()
            began = time.perf_counter()
            calls = sorted(call for future in futures for call in future.result())
        elapsed = calls[-1][0] - began
        done = sum(count for _, count in calls)
        if done != sizes.claim_tasks:
            raise RuntimeError(f"{claimers} claimers finished {done} of {sizes.claim_tasks}")
        # a second half slower than the first means a cost that grows with the history
        totals = zip(calls, accumulate(count for _, count in calls), strict=True)
        half = next(end for (end, _), total in totals if total >= done / 2) - began
        rates = (done / elapsed, done / 2 / half, done / 2 / (elapsed - half))
        rows.append(
            [f"{claimers}", f"{done:,}", f"{elapsed:.2f}"]
            + [f"{rate:,.0f}" for rate in rates]
            + [f"{len(calls) / done:.3f}"]
        )
    return rows


def measure_claims(
    conn: Connection, worker_id: int, count: int, limit: int
) -> tuple[list[float], list[float]]:
    """Claim ``limit`` then finish them, ``count`` times; re-submit as many (untimed)."""
    claim_times, finish_times = [], []
    for i in range(count):
        start = time.perf_counter()
        claimed = task_claim(conn, worker_id, limit)
        middle = time.perf_counter()
        finish_all(conn, worker_id, claimed)
        claim_times.append(middle - start)
        finish_times.append(time.perf_counter() - middle)
        if len(claimed) != limit:
            raise RuntimeError(f"claim returned {len(claimed)} tasks, not {limit}")
        task_submit(conn, "depth", tasks(10**9 + i * limit, limit))  # keep the depth
    return claim_times, finish_times


def bench_depth(dbs: Databases, sizes: Sizes) -> tuple[list[list[str]], list[str]]:
    rows, notes = [], []
    limit = sizes.latency_limit
    for depth in sizes.depths:
        with connect(dbs.fresh()) as conn:
            # the window between a bulk submit and the first (auto-)ANALYZE, made
            # deterministic: no autovacuum on the task table of this throwaway database
            conn.execute("ALTER TABLE scitq.task SET (autovacuum_enabled = false)")
            chunk = min(depth, sizes.setup_chunk)
            spent = submit(conn, "depth", depth, chunk)
            notes.append(
                f"setup: {depth:,} tasks submitted in {spent:.1f} s "
                f"({depth / spent:,.0f} tasks/s, calls of {chunk:,})"
            )
            worker = worker_register(conn, f"depth-{depth}", concurrency=limit)
            for analyzed, count in (("never", sizes.cold_claims), ("fresh", sizes.depth_claims)):
                if analyzed == "fresh":
                    conn.execute("ANALYZE scitq.task")
                measure_claims(conn, worker["id"], 5, limit)  # warm-up
                claim, finish = measure_claims(conn, worker["id"], count, limit)
                both = [c + f for c, f in zip(claim, finish, strict=True)]
                figures = (statistics.median(claim), p95(claim), statistics.median(both), p95(both))
                rows.append(
                    [f"{depth:,}", analyzed, f"{count}"] + [f"{s * 1e3:.2f}" for s in figures]
                )
    return rows, notes


# -- report -------------------------------------------------------------------------------


def table(title: str, header: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        " | ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in (header, *rows)
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return f"\n{title}\n\n" + "\n".join(lines)


def machine(admin: str, where: str) -> str:
    with open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if "model name" in line), "?")
    names = ("server_version", "shared_buffers", "synchronous_commit", "autovacuum")
    with psycopg.connect(admin, autocommit=True) as conn:
        shown = [
            conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(n))).fetchone() for n in names
        ]
    version, *settings = (str(row[0]) if row else "?" for row in shown)
    ram = psutil.virtual_memory().total / 2**30
    return (
        f"date {date.today()}; CPU {cpu}, {os.cpu_count()} cores, {ram:.1f} GiB RAM\n"
        f"PostgreSQL {version}, server: {where}; "
        + ", ".join(f"{name}={value}" for name, value in zip(names[1:], settings, strict=True))
    )


SUBMIT = "a. bulk submit: {:,} tasks into one batch (target >= 50,000 tasks/s)"
SUBMIT_HEADER = ("tasks/call", "calls", "ms/call", "tasks/s")
CLAIM = "b. claim {} + finish them, until {:,} tasks are done (target >= 5,000 tasks/s)"
CLAIM_HEADER = ("claimers", "tasks", "seconds", "tasks/s", "1st half/s", "2nd half/s",
                "round trips/task")  # fmt: skip
DEPTH = "c. task_claim(limit={}) latency (ms) vs pending tasks (target: 10^6 within 2x of 10^3)"
DEPTH_HEADER = ("pending", "analyzed", "claims", "claim p50", "claim p95", "claim+finish p50",
                "claim+finish p95")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a superuser libpq URL (default: embedded server)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--claim-tasks", type=int, help="tasks for b (to watch a longer run)")
    parser.add_argument("--claimers", help="claimer counts for b, comma-separated (1,2,4,8)")
    parser.add_argument("--sections", default="abc", help="which of a, b, c to run (abc)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.claim_tasks:
        sizes = replace(sizes, claim_tasks=args.claim_tasks)
    if args.claimers:
        sizes = replace(sizes, claimers=tuple(int(n) for n in args.claimers.split(",")))
    began = time.perf_counter()
    with server(args.database_url) as (admin, where):
        print(machine(admin, where), flush=True)
        dbs = Databases(admin)
        try:
            if "a" in args.sections:
                rows = bench_submit(dbs, sizes)
                print(table(SUBMIT.format(sizes.submit_total), SUBMIT_HEADER, rows), flush=True)
            if "b" in args.sections:
                rows = bench_claim_finish(dbs, sizes)
                title = CLAIM.format(sizes.claim_size, sizes.claim_tasks)
                print(table(title, CLAIM_HEADER, rows), flush=True)
            if "c" in args.sections:
                rows, notes = bench_depth(dbs, sizes)
                print(table(DEPTH.format(sizes.latency_limit), DEPTH_HEADER, rows))
                print("\n" + "\n".join(notes))
        finally:
            dbs.drop_all()
    print(f"\ntotal run time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
