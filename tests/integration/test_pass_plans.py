"""The agent's report pass keeps index plans as the tables grow from empty (issue 17).

The claim, the phase report and the finish are planned once per session (generic plans:
planning each call was half the cost of a pass). A long-lived agent connection makes
those plans when the tables are empty; a generic plan made then, left free, scans or
hashes whole tables that later hold 10^6 rows (bench/RESULTS.md, section b, saw it do so
at 95,000 executions). The functions forbid those paths: this test makes the plans on
empty tables, grows the tables under autovacuum off (no ANALYZE invalidates the plans),
and counts what further passes read.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from scitq.db.execution import execution_finish, execution_set_phases
from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_register

TABLES = ("task", "execution")
GROWN = 3_000
SLOTS = 8
PASSES = 10


def _pass(conn: psycopg.Connection[Any], worker_id: int, claimed: list[Any]) -> list[Any]:
    """One agent report pass: the claimed start, end, and their slots are claimed again."""
    ids = [row["execution_id"] for row in claimed]
    with conn.transaction():
        execution_set_phases(conn, worker_id, ids, "running")
        execution_finish(conn, worker_id, [{"execution_id": i, "return_code": 0} for i in ids])
        return task_claim(conn, worker_id, len(ids))


def _counters(reader: psycopg.Connection[Any]) -> dict[str, dict[str, int]]:
    reader.execute("SELECT pg_stat_clear_snapshot()")
    found = reader.execute(
        "SELECT relname, seq_scan, coalesce(idx_tup_fetch, 0) AS idx_tup_fetch, n_tup_upd"
        " FROM pg_stat_user_tables WHERE schemaname = 'scitq' AND relname = ANY (%s)",
        (list(TABLES),),
    ).fetchall()
    return {row["relname"]: row for row in found}


def _after(reader: psycopg.Connection[Any], before: dict[str, dict[str, int]], updates: int) -> Any:
    """The counters once the passes' own statistics have reached the reader."""
    deadline = time.monotonic() + 15
    while True:
        now = _counters(reader)
        if now["task"]["n_tup_upd"] - before["task"]["n_tup_upd"] >= updates:
            return now
        assert time.monotonic() < deadline, "the passes' statistics never arrived"
        time.sleep(0.1)


def test_report_passes_planned_on_empty_tables_stay_on_the_indexes(db: str) -> None:
    agent = psycopg.connect(db, autocommit=True, row_factory=dict_row)
    other = psycopg.connect(db, autocommit=True, row_factory=dict_row)
    reader = psycopg.connect(db, autocommit=True, row_factory=dict_row)
    try:
        for table in TABLES:  # no ANALYZE to invalidate the plans: the worst case
            other.execute(f"ALTER TABLE scitq.{table} SET (autovacuum_enabled = false)")
        worker = worker_register(agent, "agent", batches=["mine"], concurrency=SLOTS)["id"]
        task_submit(other, "mine", [{"command": "true"}] * SLOTS * 3)
        claimed = task_claim(agent, worker, SLOTS)
        for _ in range(2):  # plans made, and used again, while the tables are nearly empty
            claimed = _pass(agent, worker, claimed)

        # the tables grow: many tasks, and as many executions, run by another worker
        task_submit(other, "theirs", [{"command": "true"}] * GROWN)
        crowd = worker_register(other, "crowd", batches=["theirs"], concurrency=GROWN)["id"]
        ran = task_claim(other, crowd, GROWN)
        execution_finish(other, crowd, [{"execution_id": r["execution_id"], "return_code": 0}
                                        for r in ran])  # fmt: skip
        task_submit(other, "mine", [{"command": "true"}] * SLOTS * PASSES)
        agent.execute("SELECT pg_stat_force_next_flush()")
        other.execute("SELECT pg_stat_force_next_flush()")
        time.sleep(0.5)  # flushed as each goes idle
        before = _counters(reader)

        done = 0
        for _ in range(PASSES):
            done += len(claimed)
            claimed = _pass(agent, worker, claimed)
        agent.execute("SELECT pg_stat_force_next_flush()")
        after = _after(reader, before, updates=3 * done)
    finally:
        for connection in (agent, other, reader):
            connection.close()

    assert done == SLOTS * PASSES
    for table in TABLES:
        scans = after[table]["seq_scan"] - before[table]["seq_scan"]
        fetched = after[table]["idx_tup_fetch"] - before[table]["idx_tup_fetch"]
        assert scans == 0, f"{scans} scans of all of scitq.{table} in {PASSES} passes"
        # by key: a few rows per task and pass, not the GROWN rows of a whole index
        assert fetched < 40 * done, f"{fetched} rows of scitq.{table} read for {done} tasks"
