"""Partitioned execution output and event log, retention by partition drops, and the
per-batch counters (issue 16 point 4), on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from scitq.db import migrate
from scitq.db.batch import batch_count_compact, batch_delete
from scitq.db.execution import execution_append_output, execution_finish, execution_output_read
from scitq.db.partition import partition_ensure, partition_prune
from scitq.db.report import batch_counts, batch_progress
from scitq.db.task import task_claim, task_delete, task_retry, task_submit
from scitq.db.worker import worker_register

pytestmark = pytest.mark.sql

T0 = datetime(2020, 1, 1, tzinfo=UTC)
DAY = 86400.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def partitions(conn: psycopg.Connection[Any], parent: str) -> list[str]:
    found = conn.execute(
        "SELECT partition FROM scitq.partition_overview WHERE parent = %s ORDER BY partition",
        (parent,),
    ).fetchall()
    return [name for (name,) in found]


def narrow(conn: psycopg.Connection[Any], width: int) -> None:
    """Replace the (empty) output ranges of a fresh database by ranges of ``width`` ids."""
    for (name,) in conn.execute(
        "SELECT name FROM scitq.partition_bounds('scitq.execution_output')"
    ).fetchall():
        conn.execute(psycopg.sql.SQL("DROP TABLE scitq.{}").format(psycopg.sql.Identifier(name)))
    partition_ensure(conn, output_width=width, output_ahead=2)


def attempt(
    conn: psycopg.Connection[Any], worker: int, when: float, *, lines: int = 3, rc: int | None = 0
) -> int:
    """One task claimed, given output and (unless rc is None) finished at ``when``."""
    task_submit(conn, "b", [{"command": "echo", "name": f"t{when}"}], now=at(when))
    (claim,) = task_claim(conn, worker, 1, now=at(when))
    execution = claim["execution_id"]
    chunks = [(execution, seq, "stdout", f"{execution}:{seq}\n") for seq in range(lines)]
    execution_append_output(conn, worker, chunks, now=at(when))
    if rc is not None:
        execution_finish(
            conn, worker, [{"execution_id": execution, "return_code": rc}], now=at(when)
        )
    return execution


def output_rows(conn: psycopg.Connection[Any], execution: int) -> int:
    query = "SELECT count(*) FROM scitq.execution_output WHERE execution_id = %s"
    return conn.execute(query, (execution,)).fetchone()[0]


@pytest.fixture
def worker(conn: psycopg.Connection[Any]) -> int:
    return worker_register(conn, "w1", concurrency=20, lease_seconds=300 * DAY, now=at(0))["id"]


def test_partitions_are_created_ahead_of_the_writes(conn, worker):
    # a fresh database: 5 ranges of 100,000 ids (0 .. 500,000) and the default
    assert partitions(conn, "execution_output")[:2] == [
        "execution_output_default",
        "execution_output_e0",
    ]
    assert len(partitions(conn, "execution_output")) == 6
    events = partitions(conn, "task_event")
    assert "task_event_default" in events and len(events) >= 3  # this week and 2 ahead
    narrow(conn, 2)
    assert partitions(conn, "execution_output") == [
        "execution_output_default", "execution_output_e0", "execution_output_e2",
        "execution_output_e4",
    ]  # fmt: skip
    for when in range(5):
        attempt(conn, worker, when)
    created = partition_ensure(conn, output_width=2, output_ahead=2)
    # the newest execution is 5: ranges up to 5 + 2 * 2 = 9 exist
    assert [row["partition"] for row in created] == ["execution_output_e6", "execution_output_e8"]
    assert partition_ensure(conn, output_width=2, output_ahead=2) == []  # idempotent
    default = "SELECT count(*) FROM scitq.execution_output_default"
    assert conn.execute(default).fetchone()[0] == 0


def test_output_without_a_partition_lands_in_the_default_and_is_moved(conn, worker):
    narrow(conn, 2)  # ids 0-5 covered
    ids = [attempt(conn, worker, when, lines=2) for when in range(8)]  # 1 .. 8
    stray = "SELECT count(*) FROM scitq.execution_output_default"
    assert conn.execute(stray).fetchone()[0] == 6  # ids 6, 7, 8
    created = partition_ensure(conn, output_width=2, output_ahead=1)
    moved = {row["partition"]: row["moved_rows"] for row in created}
    assert (moved["execution_output_e6"], moved["execution_output_e8"]) == (4, 2)
    assert conn.execute(stray).fetchone()[0] == 0
    assert [output_rows(conn, i) for i in ids] == [2] * 8


def test_prune_drops_exactly_the_partitions_the_periods_let_go(conn, worker):
    narrow(conn, 2)  # ranges e0 [0,2), e2 [2,4), e4 [4,6), e6 [6,8) ...
    old_ok = attempt(conn, worker, 0)  # 1: e0
    old_failed = attempt(conn, worker, 0, rc=1)  # 2: e2
    old_ok_2 = attempt(conn, worker, 0)  # 3: e2
    recent = attempt(conn, worker, 20 * DAY)  # 4: e4, ended 20 days before the prune
    old_ok_3 = attempt(conn, worker, 0)  # 5: e4
    live = attempt(conn, worker, 0, rc=None)  # 6: e6, still running
    attempt(conn, worker, 0)  # 7: e6
    attempt(conn, worker, 0)  # 8: e8, the newest range: ids may still be given in it
    tasks_before = conn.execute("SELECT count(*) FROM scitq.task").fetchone()[0]
    executions_before = conn.execute("SELECT count(*) FROM scitq.execution").fetchone()[0]

    acted = partition_prune(conn, 30, 90, None, now=at(40 * DAY))
    assert [(r["partition"], r["action"]) for r in acted] == [
        ("execution_output_e0_all", "dropped"),
        ("execution_output_e0", "dropped"),
        ("execution_output_e2_failed", "kept"),
        ("execution_output_e2_all", "dropped"),
    ]
    assert acted[2]["rows"] == 3  # the failed attempt's 3 rows copied
    rows = [output_rows(conn, e) for e in (old_ok, old_failed, old_ok_2, recent, old_ok_3, live)]
    assert rows == [0, 3, 0, 3, 3, 3]
    listed = partitions(conn, "execution_output")
    assert "execution_output_e0" not in listed and "execution_output_e2" in listed
    assert partition_prune(conn, 30, 90, None, now=at(40 * DAY)) == []  # nothing more

    # failed output goes once its own period is over; the recent range once it is old
    acted = partition_prune(conn, 30, 90, None, now=at(100 * DAY))
    assert [(r["partition"], r["action"]) for r in acted] == [
        ("execution_output_e2", "dropped"),
        ("execution_output_e4_all", "dropped"),
        ("execution_output_e4", "dropped"),
    ]
    assert output_rows(conn, old_failed) == 0 and output_rows(conn, live) == 3
    # tasks and executions are always kept
    assert conn.execute("SELECT count(*) FROM scitq.task").fetchone()[0] == tasks_before
    assert conn.execute("SELECT count(*) FROM scitq.execution").fetchone()[0] == executions_before


def test_nothing_is_dropped_while_periods_are_unset(conn, worker):
    narrow(conn, 2)
    for when in range(6):
        attempt(conn, worker, when, rc=when % 2)
    assert partition_prune(conn, None, None, None, now=at(1000 * DAY)) == []
    # failed output kept forever: the ranges of failed attempts keep their _failed leaf
    acted = partition_prune(conn, 1, None, None, now=at(1000 * DAY))
    kept = [r["partition"] for r in acted if r["action"] == "kept"]
    assert kept == ["execution_output_e2_failed", "execution_output_e4_failed"]
    assert partition_prune(conn, 1, None, None, now=at(2000 * DAY)) == []


def test_event_partitions_are_dropped_by_age(conn, worker):
    now = conn.execute("SELECT now()").fetchone()[0]
    attempt(conn, worker, 0)  # events of 2020: in the default partition
    weeks = [p for p in partitions(conn, "task_event") if p != "task_event_default"]
    acted = partition_prune(conn, None, None, 1, now=now + timedelta(days=400))
    assert sorted(r["partition"] for r in acted) == sorted(weeks)
    assert partitions(conn, "task_event") == ["task_event_default"]
    # the default partition is never dropped: the 2020 events are still there
    assert conn.execute("SELECT count(*) FROM scitq.task_event").fetchone()[0] > 0


def test_output_across_a_partition_boundary_reads_in_order(conn, worker):
    narrow(conn, 2)
    task_submit(conn, "b", [{"command": "false", "retries": 2}], now=at(0))
    executions = []
    for attempt_no in range(3):  # ids 1, 2, 3: ranges e0, e2, e2
        (claim,) = task_claim(conn, worker, 1, now=at(100 * attempt_no + 50))
        execution = claim["execution_id"]
        executions.append(execution)
        chunks = [(execution, seq, "stdout", f"a{attempt_no}s{seq}\n") for seq in (2, 0, 1)]
        execution_append_output(conn, worker, chunks, now=at(100 * attempt_no + 50))
        execution_finish(conn, worker, [{"execution_id": execution, "return_code": 1}],
                         now=at(100 * attempt_no + 60))  # fmt: skip
    where = conn.execute(
        "SELECT DISTINCT tableoid::regclass::text FROM scitq.execution_output ORDER BY 1"
    ).fetchall()
    assert where == [("scitq.execution_output_e0_all",), ("scitq.execution_output_e2_all",)]
    log = conn.execute(
        "SELECT text FROM scitq.task_log WHERE task_id = 1 ORDER BY attempt, seq"
    ).fetchall()
    assert [t for (t,) in log] == [f"a{a}s{s}\n" for a in range(3) for s in range(3)]
    first = execution_output_read(conn, executions[0], after_seq=0, limit=10)
    assert [c.text for c in first] == ["a0s1\n", "a0s2\n"]
    # after the succeeded period, the failed attempts' output is read the same way
    partition_prune(conn, 1, None, None, now=at(10 * DAY))
    assert [t for (t,) in conn.execute(
        "SELECT text FROM scitq.task_log WHERE task_id = 1 ORDER BY attempt, seq"
    ).fetchall()] == [t for (t,) in log]  # fmt: skip


def counts_by_rows(conn: psycopg.Connection[Any]) -> dict[tuple[int, str], int]:
    found = conn.execute(
        "SELECT batch_id, status::text, count(*) FROM scitq.task GROUP BY 1, 2"
    ).fetchall()
    return {(b, s): n for b, s, n in found}


def counts_kept(conn: psycopg.Connection[Any]) -> dict[tuple[int, str], int]:
    found = conn.execute(
        "SELECT batch_id, status::text, sum(n) FROM scitq.batch_task_count GROUP BY 1, 2"
        " HAVING sum(n) <> 0"
    ).fetchall()
    return {(b, s): n for b, s, n in found}


def test_batch_counters_follow_every_change(conn, db, worker):
    task_submit(conn, "b", [{"command": "echo", "retries": 0}] * 6, now=at(0))
    task_submit(conn, "other", [{"command": "echo"}] * 2, now=at(0))
    claims = task_claim(conn, worker, 4, now=at(1))
    execution_finish(conn, worker, [{"execution_id": claims[0]["execution_id"], "return_code": 0},
                                    {"execution_id": claims[1]["execution_id"], "return_code": 1}],
                     now=at(2))  # fmt: skip
    assert counts_kept(conn) == counts_by_rows(conn)
    # another backend counts in its own rows; a rolled back change counts nothing
    with psycopg.connect(db) as other:
        task_retry(other, [claims[1]["task_id"]], now=at(3))
        with pytest.raises(psycopg.errors.RaiseException), other.transaction():
            task_delete(other, [claims[2]["task_id"]], now=at(3))
            other.execute("DO $$ BEGIN RAISE EXCEPTION 'roll back'; END $$")
    slots = conn.execute("SELECT count(DISTINCT slot) FROM scitq.batch_task_count").fetchone()[0]
    assert slots == 2
    assert counts_kept(conn) == counts_by_rows(conn)
    task_delete(conn, [claims[3]["task_id"]], now=at(4))
    assert counts_kept(conn) == counts_by_rows(conn)
    assert batch_count_compact(conn) > 0
    assert conn.execute("SELECT DISTINCT slot FROM scitq.batch_task_count").fetchall() == [(0,)]
    assert counts_kept(conn) == counts_by_rows(conn)
    batch_delete(conn, "other", now=at(5))
    assert counts_kept(conn) == counts_by_rows(conn)
    (progress,) = batch_progress(conn, "b")
    assert (progress["total"], progress["succeeded"], progress["pending"]) == (5, 1, 3)


def test_batch_reads_do_not_read_task_rows(conn, worker):
    """batch_progress (the view behind `scitq batch list`) and the dashboard's batch
    counts read the counters: no scan of the task table, whatever its size."""
    task_submit(conn, "b", [{"command": "echo"}] * 500, now=at(0))
    task_claim(conn, worker, 10, now=at(1))
    conn.execute("ANALYZE scitq.task")
    reads = (
        "SELECT seq_scan, coalesce(idx_scan, 0), coalesce(idx_tup_fetch, 0)"
        " FROM pg_stat_xact_user_tables WHERE relid = 'scitq.task'::regclass"
    )
    with conn.transaction():
        before = conn.execute(reads).fetchone()
        batch_progress(conn, None)
        batch_progress(conn, "b")
        batch_counts(conn)
        batch_counts(conn, "b")
        after = conn.execute(reads).fetchone()
    assert after == before  # not one scan of the task table, not one row fetched
    plan = conn.execute(
        "EXPLAIN (FORMAT JSON) " + _query("batch_counts"), {"batch": None, "window_seconds": 3600.0,
                                                           "sample": 2000}
    ).fetchone()[0]  # fmt: skip
    scans = [n for n in _nodes(plan[0]["Plan"]) if n.get("Relation Name") == "task"]
    # only the recent sample's tasks, by primary key (at most `sample` of them)
    assert all(n["Node Type"] == "Index Scan" and n["Index Name"] == "task_pkey" for n in scans)


def _query(name: str) -> str:
    from scitq import sql

    return sql.queries()[name]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


def test_upgrade_and_downgrade_keep_output_and_events(empty_db):
    from alembic import command

    config = migrate.alembic_config(migrate.engine_for(empty_db))
    command.upgrade(config, "0004")
    with psycopg.connect(empty_db, autocommit=True, row_factory=dict_row) as conn:
        worker = worker_register(conn, "w1", concurrency=3, lease_seconds=3600, now=at(0))["id"]
        task_submit(conn, "b", [{"command": "echo"}] * 3, now=at(0))
        # revision 0004's claim (the named query calls a later version)
        claims = conn.execute("SELECT * FROM scitq.task_claim_v1(%s, 3, %s)", (worker, at(1)))
        chunks = [(c["execution_id"], s, "stdout", f"{c['execution_id']}/{s}") for c in claims
                  for s in range(4)]  # fmt: skip
        execution_append_output(conn, worker, chunks, now=at(2))
        before = conn.execute(
            "SELECT (SELECT count(*) FROM scitq.execution_output) AS output,"
            " (SELECT count(*) FROM scitq.task_event) AS events"
        ).fetchone()
    assert before == {"output": 12, "events": 6}
    command.upgrade(config, "head")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM scitq.execution_output").fetchone()[0] == 12
        assert conn.execute("SELECT count(*) FROM scitq.task_event").fetchone()[0] == 6
        # the 2020 events got partitions of their own, not the default one
        assert conn.execute("SELECT count(*) FROM scitq.task_event_default").fetchone()[0] == 0
        assert counts_kept(conn) == counts_by_rows(conn)
        # new events continue the old ids
        task_submit(conn, "b", [{"command": "echo"}], now=at(3))
        ids = conn.execute("SELECT max(id), count(DISTINCT id) FROM scitq.task_event").fetchone()
        assert ids == (7, 7)
    command.downgrade(config, "0004")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM scitq.execution_output").fetchone()[0] == 12
        assert conn.execute("SELECT count(*) FROM scitq.task_event").fetchone()[0] == 7
        kind = conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = 'scitq.execution_output'::regclass"
        ).fetchone()
        assert kind == ("r",)
