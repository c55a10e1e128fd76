"""Calls whose answer was lost after their commit (the connection broke, the primary
failed over): a claim the agent never heard of must not hold its task for ever
(heartbeats renew only the executions the agent lists, so the orphan expires and is
requeued free), and a result sent again is a replay, not a refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scitq import errors
from scitq.db.execution import execution_expire_leases, execution_finish
from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_heartbeat, worker_register

T0 = datetime(2020, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_heartbeat_renews_only_the_executions_the_agent_holds(conn):
    tasks = task_submit(conn, "b", [{"command": "x"}, {"command": "y"}], now=at(0))
    worker = worker_register(conn, "w1", batches=["b"], concurrency=2, lease_seconds=30, now=at(0))[
        "id"
    ]
    held, orphan = task_claim(conn, worker, 2, now=at(1))
    # the agent only knows of the first claim: the answer of the second was lost
    for second in (10, 20, 30, 40):
        beat = worker_heartbeat(conn, worker, [held["execution_id"]], now=at(second))
        assert beat["dead_execution_ids"] == []
    expired = execution_expire_leases(conn, now=at(45))
    assert expired == [{"execution_id": orphan["execution_id"], "task_id": orphan["task_id"]}]
    rows = conn.execute(
        "SELECT e.id, e.status, t.status, t.requeue_count FROM scitq.execution e "
        "JOIN scitq.task t ON t.id = e.task_id ORDER BY e.id"
    ).fetchall()
    assert rows == [
        (held["execution_id"], "assigned", "assigned", 0),
        (orphan["execution_id"], "lost", "pending", 1),
    ]
    assert {t["id"] for t in tasks} == {held["task_id"], orphan["task_id"]}
    # the agent's own execution is still renewed
    beat = worker_heartbeat(conn, worker, [held["execution_id"]], now=at(50))
    assert beat["dead_execution_ids"] == []
    assert execution_expire_leases(conn, now=at(75)) == []


def test_a_finish_sent_again_after_a_lost_answer_is_not_refused(conn):
    """The result was committed but its answer lost: sending it again returns the
    execution as it is, changes nothing, and a different result is still refused."""
    task_submit(conn, "b", [{"command": "x"}, {"command": "y"}], now=at(0))
    worker = worker_register(conn, "w1", batches=["b"], concurrency=2, lease_seconds=30, now=at(0))
    first, second = task_claim(conn, worker["id"], 2, now=at(1))
    result = {"execution_id": first["execution_id"], "return_code": 0, "wall_seconds": 1.0}
    stored = execution_finish(conn, worker["id"], [result], now=at(2))
    before = conn.execute("SELECT * FROM scitq.execution ORDER BY id").fetchall()
    again = execution_finish(conn, worker["id"], [result], now=at(3))
    assert again == stored
    assert conn.execute("SELECT * FROM scitq.execution ORDER BY id").fetchall() == before
    # a replay next to a new result: the new one is stored
    other = {"execution_id": second["execution_id"], "return_code": 1}
    both = execution_finish(conn, worker["id"], [result, other], now=at(4))
    assert [(r["execution_id"], r["execution_status"]) for r in both] == [
        (first["execution_id"], "succeeded"),
        (second["execution_id"], "failed"),
    ]
    # not a replay: another result for an ended execution is refused (fencing)
    with pytest.raises(errors.ExecutionNotLive):
        execution_finish(conn, worker["id"], [{**result, "return_code": 3}], now=at(5))
    # nor is another worker's replay accepted
    intruder = worker_register(conn, "w2", batches=["b"], now=at(5))["id"]
    with pytest.raises(errors.ExecutionNotLive):
        execution_finish(conn, intruder, [result], now=at(6))
