"""`scitq task explain`: each reason a task is not running, set up through the SQL functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from scitq.db.batch import batch_pause
from scitq.db.execution import execution_set_phase
from scitq.db.task import task_cancel, task_pause
from scitq.db.worker import worker_stop, worker_update
from tests.cli.conftest import Invoke, assert_one_line_error, claim, register, run_to_end, submit

pytestmark = pytest.mark.sql


def explained(invoke: Invoke, task_id: int) -> dict[str, Any]:
    result = invoke("task", "explain", str(task_id), "--json")
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.stdout)
    assert found["task_id"] == task_id
    return found


def test_waiting_names_the_dependency_and_its_status(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    dep, task = submit(conn, "b", {"command": "a", "name": "index"},
                       {"command": "b", "depends_on_names": ["index"]})  # fmt: skip
    worker = register(conn, "w1")
    claim(conn, worker)  # the dependency is assigned

    found = explained(invoke, task)

    assert (found["status"], found["code"]) == ("waiting", "dependency")
    assert found["message"] == f"it waits for task {dep} 'index' (assigned)"
    text = invoke("task", "explain", str(task))
    assert text.stdout.startswith(f"task {task} (waiting): it waits for task {dep}")


def test_no_worker_serves_the_batch(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    (task,) = submit(conn, "lonely", {"command": "a"})
    register(conn, "w1", batches=["other"])

    found = explained(invoke, task)

    assert found["code"] == "no_worker"
    assert "no worker serves batch 'lonely'" in found["message"]
    assert "scitq agent --batch lonely" in found["message"]


def test_only_offline_or_stopped_workers(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    (task,) = submit(conn, "b", {"command": "a"})
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    register(conn, "silent", batches=["b"], now=long_ago)
    stopped = register(conn, "gone")  # every batch
    worker_stop(conn, stopped)

    found = explained(invoke, task)

    assert found["code"] == "no_live_worker"
    assert "silent is offline (last heartbeat" in found["message"]
    assert "gone is stopped" in found["message"]


def test_every_serving_worker_is_full_or_paused(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    _first, task = submit(conn, "b", {"command": "a"}, {"command": "b"})
    busy = register(conn, "busy", batches=["b"], concurrency=1)
    claim(conn, busy)
    paused = register(conn, "resting", batches=["b"])
    worker_update(conn, paused, is_paused=True)

    found = explained(invoke, task)

    assert found["code"] == "workers_busy"
    assert "busy is full (1 of 1 slots)" in found["message"]
    assert "resting is paused" in found["message"]

    worker_update(conn, paused, is_paused=False)
    runnable = explained(invoke, task)
    assert runnable["code"] == "runnable"
    assert "resting (1 free)" in runnable["message"]
    assert "0 runnable tasks of the batch come before it" in runnable["message"]


def test_tasks_ahead_in_claim_order_are_counted(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    ids = submit(conn, "b", *({"command": str(i)} for i in range(4)), {"command": "x",
                 "priority": -1})  # fmt: skip
    register(conn, "w1", batches=["b"])
    assert "3 runnable tasks" in explained(invoke, ids[3])["message"]
    assert "4 runnable tasks" in explained(invoke, ids[4])["message"]  # lower priority


def test_batch_paused(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    (task,) = submit(conn, "held", {"command": "a"})
    register(conn, "w1")
    batch_pause(conn, "held")

    found = explained(invoke, task)

    assert found["code"] == "batch_paused"
    assert "batch 'held' is paused; `scitq batch resume held`" in found["message"]


def test_back_off_until_a_time_after_a_failed_attempt(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    (task,) = submit(conn, "b", {"command": "a", "retries": 2, "retry_delay_seconds": 600})
    worker = register(conn, "w1")
    execution = claim(conn, worker)[0]["execution_id"]
    run_to_end(conn, worker, execution, return_code=2, failure_reason="bad input")

    found = explained(invoke, task)

    assert (found["status"], found["code"]) == ("pending", "backoff")
    assert "retry back-off until" in found["message"]
    assert "attempt 1 on w1 ended (exit, exit code 2: bad input)" in found["message"]
    # the worker itself is free: the only detail is the count of attempts
    assert found["details"] == [
        "1 of 3 attempts used; 0 of 3 free requeues used (executions lost or handed back, "
        "which spend no retry)"
    ]


def test_several_reasons_come_with_details(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    (task,) = submit(conn, "b", {"command": "a"})
    batch_pause(conn, "b")

    found = explained(invoke, task)

    assert found["code"] == "batch_paused"
    assert len(found["details"]) == 1 and "no worker serves" in found["details"][0]
    text = invoke("task", "explain", str(task)).stdout.splitlines()
    assert text[1].startswith("  also: no worker serves")


def test_paused_and_canceled_tasks(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    root, dependent, held = submit(
        conn, "b", {"command": "a", "name": "root"},
        {"command": "b", "depends_on_names": ["root"]}, {"command": "c"},
    )  # fmt: skip
    task_pause(conn, [held])
    task_cancel(conn, [root], "wrong reference")

    paused = explained(invoke, held)
    assert paused["code"] == "paused"
    assert f"`scitq task resume {held}`" in paused["message"]

    canceled = explained(invoke, root)
    assert canceled["code"] == "canceled"
    assert canceled["message"].startswith("wrong reference")

    cascaded = explained(invoke, dependent)
    assert cascaded["code"] == "canceled"
    assert f"dependency task {root} was canceled" in cascaded["message"]
    assert f"retries task {root}" in cascaded["message"]


def test_assigned_running_and_ended(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    a, b, c = submit(conn, "b", {"command": "a"}, {"command": "b"}, {"command": "c"})
    worker = register(conn, "node07", concurrency=3)
    executions = {row["task_id"]: row["execution_id"] for row in claim(conn, worker, 3)}
    execution_set_phase(conn, worker, executions[b], "running")
    run_to_end(conn, worker, executions[c], return_code=137, failure_class="oom")

    assigned = explained(invoke, a)
    assert assigned["code"] == "assigned"
    assert "it is assigned to worker node07 (attempt 1, assigned since" in assigned["message"]
    running = explained(invoke, b)
    assert running["code"] == "running"
    assert "runs on worker node07" in running["message"]
    failed = explained(invoke, c)
    assert failed["code"] == "failed"
    assert "ended (oom, exit code 137)" in failed["message"]
    assert f"`scitq task retry {c}`" in failed["message"]


def test_unknown_task(invoke: Invoke) -> None:
    assert_one_line_error(invoke("task", "explain", "42"), 4, "task 42 does not exist")
