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
