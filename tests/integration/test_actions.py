"""User actions and dependency propagation: pause, resume, cancel, retry, delete."""

from __future__ import annotations

import threading

import psycopg

from scitq.db.batch import batch_cancel, batch_delete, batch_pause, batch_resume, batch_retry
from scitq.db.execution import execution_finish
from scitq.db.report import batch_progress
from scitq.db.task import (
    task_cancel,
    task_claim,
    task_delete,
    task_pause,
    task_resume,
    task_retry,
    task_submit,
)
from scitq.db.worker import worker_heartbeat, worker_register


def statuses(conn, ids):
    rows = dict(
        conn.execute("SELECT id, status FROM scitq.task WHERE id = ANY(%s)", (ids,)).fetchall()
    )
    return [rows.get(i) for i in ids]


def run(conn, worker, count, return_code=0):
    """Claim and finish up to `count` tasks; returns the task ids finished."""
    claims = task_claim(conn, worker, count)
    execution_finish(
        conn,
        worker,
        [{"execution_id": c["execution_id"], "return_code": return_code} for c in claims],
    )
    return [c["task_id"] for c in claims]


def chain(conn, batch="b"):
    """a <- b <- c, and d depends on a and b (a gather)."""
    rows = task_submit(
        conn,
        batch,
        [
            {"command": "a", "name": "a"},
            {"command": "b", "name": "b", "depends_on_names": ["a"]},
            {"command": "c", "name": "c", "depends_on_names": ["b"]},
            {"command": "d", "name": "d", "depends_on_names": ["a", "b"]},
        ],
    )
    return [r["id"] for r in rows]


def test_dependents_are_promoted_when_all_dependencies_succeed(conn):
    a, b, c, d = chain(conn)
    worker = worker_register(conn, "w", batches=["b"], concurrency=10)["id"]
    assert statuses(conn, [a, b, c, d]) == ["pending", "waiting", "waiting", "waiting"]
    assert run(conn, worker, 10) == [a]
    assert statuses(conn, [b, c, d]) == ["pending", "waiting", "waiting"]
    assert run(conn, worker, 10) == [b]
    assert statuses(conn, [c, d]) == ["pending", "pending"]
    assert sorted(run(conn, worker, 10)) == [c, d]


def test_failure_for_good_cancels_every_dependent_with_a_reason(conn):
    a, b, c, d = chain(conn)
    worker = worker_register(conn, "w", batches=["b"], concurrency=10)["id"]
    run(conn, worker, 1, return_code=2)
    assert statuses(conn, [a, b, c, d]) == ["failed", "canceled", "canceled", "canceled"]
    reasons = conn.execute(
        "SELECT DISTINCT cancel_reason, canceled_by_task_id FROM scitq.task "
        "WHERE status = 'canceled'"
    ).fetchall()
    assert reasons == [(f"dependency task {a} failed", a)]
    # nothing is left waiting forever
    assert conn.execute("SELECT count(*) FROM scitq.task WHERE status = 'waiting'").fetchone() == (
        0,
    )


def test_retry_restores_the_canceled_dependents(conn):
    a, b, c, d = chain(conn)
    worker = worker_register(conn, "w", batches=["b"], concurrency=10)["id"]
    run(conn, worker, 1, return_code=2)
    retried = task_retry(conn, [a])
    assert sorted((r["id"], r["status"]) for r in retried) == [
        (a, "pending"),
        (b, "waiting"),
        (c, "waiting"),
        (d, "waiting"),
    ]
    assert conn.execute(
        "SELECT count(*) FROM scitq.task WHERE cancel_reason IS NOT NULL"
    ).fetchone() == (0,)
    for _ in range(3):
        run(conn, worker, 10)
    assert statuses(conn, [a, b, c, d]) == ["succeeded"] * 4
    attempts = conn.execute(
        "SELECT attempt FROM scitq.execution WHERE task_id = %s ORDER BY attempt", (a,)
    ).fetchall()
    assert attempts == [(1,), (2,)]


def test_retry_gives_a_fresh_retry_budget(conn):
    (task,) = task_submit(conn, "b", [{"command": "x", "retries": 1, "retry_delay_seconds": 0}])
    worker = worker_register(conn, "w", batches=["b"])["id"]
    run(conn, worker, 1, return_code=1)
    run(conn, worker, 1, return_code=1)
    assert statuses(conn, [task["id"]]) == ["failed"]
    task_retry(conn, [task["id"]])
    run(conn, worker, 1, return_code=1)
    assert statuses(conn, [task["id"]]) == ["pending"]  # one retry left again
    run(conn, worker, 1, return_code=1)
    assert statuses(conn, [task["id"]]) == ["failed"]


def test_retry_ignores_tasks_that_did_not_fail(conn):
    a, b, _, _ = chain(conn)
    assert task_retry(conn, [a, b]) == []
    assert statuses(conn, [a, b]) == ["pending", "waiting"]


def test_pause_and_resume_tasks(conn):
    a, b, _, _ = chain(conn)
    worker = worker_register(conn, "w", batches=["b"], concurrency=10)["id"]
    paused = task_pause(conn, [a, b])
    assert sorted((r["id"], r["status"]) for r in paused) == [(a, "paused"), (b, "paused")]
    assert task_claim(conn, worker, 10) == []
    resumed = task_resume(conn, [a, b])
    assert sorted((r["id"], r["status"]) for r in resumed) == [(a, "pending"), (b, "waiting")]
    (claim,) = task_claim(conn, worker, 10)
    # a running task gets a signal, its status does not change
    assert task_pause(conn, [a]) == []
    beat = worker_heartbeat(conn, worker, [claim["execution_id"]])
    assert [s["kind"] for s in beat["signals"]] == ["pause"]
    task_resume(conn, [a])
    beat = worker_heartbeat(conn, worker, [claim["execution_id"]])
    assert [s["kind"] for s in beat["signals"]] == ["pause", "resume"]


def test_cancel_running_task_cancels_execution_and_dependents(conn):
    a, b, c, d = chain(conn)
    worker = worker_register(conn, "w", batches=["b"], concurrency=10)["id"]
    (claim,) = task_claim(conn, worker, 10)
    canceled = task_cancel(conn, [a], reason="wrong input")
    assert canceled == [{"id": a, "status": "canceled"}]
    assert statuses(conn, [a, b, c, d]) == ["canceled"] * 4
    assert conn.execute(
        "SELECT status, failure_class, failure_reason FROM scitq.execution"
    ).fetchone() == ("canceled", "canceled", "wrong input")
    beat = worker_heartbeat(conn, worker, [claim["execution_id"]])
    assert beat["dead_execution_ids"] == [claim["execution_id"]]
    assert task_cancel(conn, [a]) == []  # already over


def test_delete_task_cancels_its_dependents(conn):
    a, b, c, d = chain(conn)
    assert task_delete(conn, [b]) == 1
    assert statuses(conn, [a, b, c, d]) == ["pending", None, "canceled", "canceled"]
    reason = conn.execute("SELECT cancel_reason FROM scitq.task WHERE id = %s", (c,)).fetchone()
    assert reason == (f"dependency task {b} was deleted",)
    assert conn.execute(
        "SELECT count(*) FROM scitq.task_dependency WHERE depends_on_id = %s", (b,)
    ).fetchone() == (0,)


def test_batch_actions(conn):
    chain(conn, "x")
    task_submit(conn, "y", [{"command": "other"}])
    worker = worker_register(conn, "w", batches=["x"], concurrency=10)["id"]
    batch_pause(conn, "x")
    assert task_claim(conn, worker, 10) == []
    assert conn.execute("SELECT is_paused FROM scitq.batch WHERE name = 'x'").fetchone() == (True,)
    batch_resume(conn, "x")
    run(conn, worker, 10, return_code=9)
    assert batch_cancel(conn, "x") == 0  # everything already ended
    assert batch_retry(conn, "x") == 4
    assert batch_cancel(conn, "x") == 4
    progress = {r["batch"]: r for r in batch_progress(conn)}
    assert (progress["x"]["canceled"], progress["x"]["remaining"], progress["y"]["pending"]) == (
        4,
        0,
        1,
    )
    assert batch_delete(conn, "x") == 4
    assert [r["batch"] for r in batch_progress(conn)] == ["y"]
    assert conn.execute("SELECT count(*) FROM scitq.execution").fetchone() == (0,)


def test_concurrent_completion_of_two_dependencies_promotes_the_gather(db, conn):
    """Two transactions finish the two dependencies of one task at the same time."""
    for round_ in range(20):
        rows = task_submit(
            conn,
            f"g{round_}",
            [
                {"command": "p", "name": "p"},
                {"command": "q", "name": "q"},
                {"command": "gather", "name": "gather", "depends_on_names": ["p", "q"]},
            ],
        )
        workers = [
            worker_register(conn, f"w{round_}-{i}", batches=[f"g{round_}"])["id"] for i in range(2)
        ]
        claims = [task_claim(conn, w, 1)[0] for w in workers]
        barrier = threading.Barrier(2)

        def finish(worker_id, claim, barrier=barrier):
            with psycopg.connect(db) as own:
                barrier.wait()
                execution_finish(
                    own, worker_id, [{"execution_id": claim["execution_id"], "return_code": 0}]
                )
                own.commit()

        threads = [
            threading.Thread(target=finish, args=(w, c))
            for w, c in zip(workers, claims, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert statuses(conn, [rows[2]["id"]]) == ["pending"], f"round {round_}"


def test_retrying_a_canceled_dependent_retries_its_root_cause(conn):
    a, b, c, d = chain(conn)
    task_cancel(conn, [a])
    retried = task_retry(conn, [b])
    assert [(r["id"], r["status"]) for r in retried] == [
        (a, "pending"),
        (b, "waiting"),
        (c, "waiting"),
        (d, "waiting"),
    ]


def test_deleting_a_succeeded_task_leaves_its_dependents_alone(conn):
    a, b, c, d = chain(conn)
    worker = worker_register(conn, "w", batches=["b"], concurrency=10)["id"]
    run(conn, worker, 10)  # a succeeds, b becomes pending
    assert task_delete(conn, [a]) == 1
    assert statuses(conn, [b, c, d]) == ["pending", "waiting", "waiting"]
    assert run(conn, worker, 10) == [b]
    assert statuses(conn, [c, d]) == ["pending", "pending"]
