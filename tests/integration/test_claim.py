"""Claiming: order, limits, batches, pauses, and a race of concurrent claimers."""

from __future__ import annotations

import threading
from collections import Counter

import psycopg
import pytest

from scitq import errors
from scitq.db.batch import batch_pause, batch_resume
from scitq.db.execution import execution_finish
from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_register, worker_update


def test_claim_orders_by_priority_then_age(conn):
    rows = task_submit(
        conn,
        "b",
        [
            {"command": f"c{i}", "name": f"t{i}", "priority": p}
            for i, p in enumerate([0, 5, 0, 5, 1])
        ],
    )
    worker = worker_register(conn, "w", batches=["b"], concurrency=10)
    claimed = task_claim(conn, worker["id"], 10)
    names = [r["name"] for r in claimed]
    assert names == ["t1", "t3", "t4", "t0", "t2"]
    assert {r["attempt"] for r in claimed} == {1}
    assert all(r["batch"] == "b" for r in claimed)
    statuses = conn.execute(
        "SELECT DISTINCT status FROM scitq.task WHERE id = ANY(%s)", ([r["id"] for r in rows],)
    ).fetchall()
    assert statuses == [("assigned",)]


def test_claim_never_exceeds_concurrency_plus_prefetch(conn):
    task_submit(conn, "b", [{"command": "x"}] * 20)
    worker = worker_register(conn, "w", batches=["b"], concurrency=3, prefetch=2)
    assert len(task_claim(conn, worker["id"], 100)) == 5
    assert task_claim(conn, worker["id"], 100) == []
    worker_update(conn, worker["id"], concurrency=4)
    assert len(task_claim(conn, worker["id"], 100)) == 1


def _run_first(conn, worker_id, count, wall_seconds):
    """Claim and finish ``count`` tasks of the worker, each taking ``wall_seconds``."""
    claimed = task_claim(conn, worker_id, count)
    assert len(claimed) == count
    results = [{"execution_id": r["execution_id"], "return_code": 0, "wall_seconds": wall_seconds}
               for r in claimed]  # fmt: skip
    execution_finish(conn, worker_id, results)


def test_short_tasks_are_read_ahead_when_asked_for_more(conn):
    task_submit(conn, "quick", [{"command": "true"}] * 40)
    worker = worker_register(conn, "w", batches=["quick"], concurrency=3, prefetch=1)
    # no success yet: the tasks are not known to be short
    assert len(task_claim(conn, worker["id"], 100)) == 4
    execution_finish(conn, worker["id"], [
        {"execution_id": e, "return_code": 0, "wall_seconds": 0.01}
        for (e,) in conn.execute("SELECT id FROM scitq.execution WHERE status = 'assigned'")
    ])  # fmt: skip
    # 4 short successes (>= 3 slots): up to 8 x 3 + 1 held
    assert len(task_claim(conn, worker["id"], 100)) == 25
    assert task_claim(conn, worker["id"], 100) == []
    # asked for the free slots only, it gets no more than them (older agents)
    other = worker_register(conn, "w2", batches=["quick"], concurrency=3)
    _run_first(conn, other["id"], 3, 0.01)
    assert len(task_claim(conn, other["id"], 3)) == 3


@pytest.mark.parametrize("walls", [[0.6, 0.6, 0.6], [0.01, 0.01, 2.5]], ids=["mean", "max"])
def test_long_tasks_are_not_read_ahead(conn, walls):
    task_submit(conn, "slow", [{"command": "sleep 1"}] * 40)
    worker = worker_register(conn, "w", batches=["slow"], concurrency=3)
    claimed = task_claim(conn, worker["id"], 3)
    execution_finish(conn, worker["id"], [
        {"execution_id": r["execution_id"], "return_code": 0, "wall_seconds": wall}
        for r, wall in zip(claimed, walls, strict=True)
    ])  # fmt: skip
    assert len(task_claim(conn, worker["id"], 100)) == 3


def test_a_batch_not_yet_run_stops_the_read_ahead(conn):
    task_submit(conn, "quick", [{"command": "true"}] * 40)
    worker = worker_register(conn, "w", batches=["quick", "new"], concurrency=2)
    _run_first(conn, worker["id"], 2, 0.01)
    task_submit(conn, "new", [{"command": "long-job"}])  # pending, never run here
    assert len(task_claim(conn, worker["id"], 100)) == 2
    # paused, the batch is not claimed from and no longer counts: read-ahead again
    batch_pause(conn, "new")
    _finish_held(conn, worker["id"], 0.01)
    assert len(task_claim(conn, worker["id"], 100)) == 16


def _finish_held(conn, worker_id, wall_seconds):
    held = conn.execute(
        "SELECT id FROM scitq.execution WHERE worker_id = %s AND status = 'assigned'", (worker_id,)
    ).fetchall()
    results = [{"execution_id": e, "return_code": 0, "wall_seconds": wall_seconds} for (e,) in held]
    execution_finish(conn, worker_id, results)


def test_claim_serves_only_the_workers_batches_and_skips_paused(conn):
    task_submit(conn, "mine", [{"command": "a"}])
    task_submit(conn, "other", [{"command": "b"}])
    task_submit(conn, "held", [{"command": "c"}])
    batch_pause(conn, "held")
    worker = worker_register(conn, "w", batches=["mine", "held"], concurrency=10)
    assert [r["batch"] for r in task_claim(conn, worker["id"], 10)] == ["mine"]
    batch_resume(conn, "held")
    assert [r["batch"] for r in task_claim(conn, worker["id"], 10)] == ["held"]
    every = worker_register(conn, "any", concurrency=10)  # no batch: every batch
    assert [r["batch"] for r in task_claim(conn, every["id"], 10)] == ["other"]


def test_paused_or_draining_worker_claims_nothing(conn):
    task_submit(conn, "b", [{"command": "a"}])
    worker = worker_register(conn, "w", batches=["b"])
    worker_update(conn, worker["id"], is_paused=True)
    assert task_claim(conn, worker["id"], 1) == []
    worker_update(conn, worker["id"], is_paused=False, is_draining=True)
    assert task_claim(conn, worker["id"], 1) == []
    worker_update(conn, worker["id"], is_draining=False)
    assert len(task_claim(conn, worker["id"], 1)) == 1


def test_negative_limit_is_refused(conn):
    worker = worker_register(conn, "w")
    with pytest.raises(errors.InvalidArgument, match="claim limit"):
        task_claim(conn, worker["id"], -1)


def test_claim_uses_the_partial_index(conn):
    task_submit(conn, "b", [{"command": "x"}] * 3000)
    conn.execute("ANALYZE scitq.task")
    plan = conn.execute(
        "EXPLAIN SELECT id FROM scitq.task WHERE batch_id = 1 AND status = 'pending' "
        "AND available_at <= now() ORDER BY priority DESC, id LIMIT 10 FOR UPDATE SKIP LOCKED"
    ).fetchall()
    assert "task_claim_idx" in "\n".join(line for (line,) in plan)


@pytest.mark.parametrize("claimers", [8])
def test_concurrent_claims_have_no_duplicates_and_lose_nothing(db, conn, claimers):
    total = 4000
    for start in range(0, total, 1000):
        task_submit(conn, "race", [{"command": f"t{i}"} for i in range(start, start + 1000)])
    workers = [
        worker_register(conn, f"w{i}", batches=["race"], concurrency=25)["id"]
        for i in range(claimers)
    ]
    seen: list[int] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def claim_loop(worker_id: int) -> None:
        try:
            with psycopg.connect(db, autocommit=True) as own:
                while True:
                    rows = task_claim(own, worker_id, 25)
                    if not rows:
                        return
                    with lock:
                        seen.extend(r["task_id"] for r in rows)
                    execution_finish(
                        own,
                        worker_id,
                        [{"execution_id": r["execution_id"], "return_code": 0} for r in rows],
                    )
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=claim_loop, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert failures == []
    duplicates = [task for task, n in Counter(seen).items() if n > 1]
    assert duplicates == []
    assert len(seen) == total
    assert conn.execute("SELECT status, count(*) FROM scitq.task GROUP BY status").fetchall() == [
        ("succeeded", total)
    ]
    assert conn.execute(
        "SELECT count(*), count(DISTINCT task_id) FROM scitq.execution"
    ).fetchone() == (
        total,
        total,
    )
    per_worker = conn.execute("SELECT count(DISTINCT worker_id) FROM scitq.execution").fetchone()[0]
    assert per_worker > 1  # the work was really shared
