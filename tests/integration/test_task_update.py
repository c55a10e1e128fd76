"""Editing and rerunning tasks (task_update_v1, task_rerun_v1): what changes, what runs
again, the fate of a running attempt, the retry budget and the event log."""

from __future__ import annotations

import psycopg
import pytest

from scitq import errors
from scitq.db.execution import execution_finish, execution_set_phase
from scitq.db.task import task_claim, task_edits, task_rerun, task_submit, task_update
from scitq.db.worker import worker_heartbeat, worker_register
from tests.integration.test_actions import chain, run, statuses

pytestmark = pytest.mark.sql


def task_row(conn, task_id):
    return conn.execute(
        "SELECT status, command, retries, attempt_count, attempt_count - retry_floor AS used, "
        "requeue_count, name, container FROM scitq.task WHERE id = %s",
        (task_id,),
    ).fetchone()


def submit(conn, batch="b", **fields):
    (row,) = task_submit(conn, batch, [{"command": "true", **fields}])
    return row["id"]


def test_a_pending_task_takes_the_change_in_place_and_the_edit_is_logged(conn):
    task = submit(conn, name="x")
    rows = task_update(conn, [task], {"command": "echo new", "retries": 2, "name": None},
                       by="alice")  # fmt: skip
    assert [(r["id"], r["status"], r["rerun"]) for r in rows] == [(task, "pending", False)]
    status, command, retries, *_, name, _ = task_row(conn, task)
    assert (status, command, retries, name) == ("pending", "echo new", 2, None)
    (edit,) = task_edits(conn, task)
    assert edit["by"] == "alice"
    assert edit["fields"] == {
        "command": {"from": "true", "to": "echo new"},
        "retries": {"from": 0, "to": 2},
        "name": {"from": "x", "to": None},
    }
    # the same change again changes nothing and logs nothing
    task_update(conn, [task], {"command": "echo new"})
    assert len(task_edits(conn, task)) == 1


def test_a_running_attempt_is_killed_and_the_agent_fenced(conn):
    task = submit(conn, retries=1)
    worker = worker_register(conn, "w", batches=["b"])["id"]
    (claim,) = task_claim(conn, worker, 1)
    execution_set_phase(conn, worker, claim["execution_id"], "running")
    (row,) = task_update(conn, [task], {"command": "echo fixed"})
    assert (row["status"], row["rerun"]) == ("pending", True)
    execution = conn.execute(
        "SELECT status, failure_class, failure_reason FROM scitq.execution WHERE id = %s",
        (claim["execution_id"],),
    ).fetchone()
    assert execution[:2] == ("canceled", "canceled")
    assert execution[2].startswith("task updated by ")
    # the agent learns its copy is dead, and its late report is refused
    beat = worker_heartbeat(conn, worker, [claim["execution_id"]])
    assert list(beat["dead_execution_ids"]) == [claim["execution_id"]]
    with pytest.raises(errors.ExecutionNotLive):
        execution_finish(conn, worker, [{"execution_id": claim["execution_id"], "return_code": 0}])
    conn.rollback()
    # the next attempt runs the new command, numbered on, with the whole retry budget
    (again,) = task_claim(conn, worker, 1)
    assert (again["command"], again["attempt"]) == ("echo fixed", 2)
    status, _, _, attempts, used, requeued, *_ = task_row(conn, task)
    assert (status, attempts, used, requeued) == ("assigned", 2, 1, 0)


def test_bookkeeping_fields_never_restart_a_running_task(conn):
    task = submit(conn)
    worker = worker_register(conn, "w", batches=["b"])["id"]
    task_claim(conn, worker, 1)
    (row,) = task_update(conn, [task], {"priority": 5, "tags": ["x"], "batch": "other"})
    assert (row["status"], row["rerun"]) == ("assigned", False)
    batch = conn.execute(
        "SELECT b.name FROM scitq.task t JOIN scitq.batch b ON b.id = t.batch_id WHERE t.id = %s",
        (task,),
    ).fetchone()
    assert batch == ("other",)
    # and rerun=False edits what runs without touching the attempt
    (row,) = task_update(conn, [task], {"command": "later"}, rerun=False)
    assert (row["status"], row["rerun"]) == ("assigned", False)


def test_a_succeeded_task_is_rerun_and_its_unstarted_dependents_wait_again(conn):
    a, b, c, d = chain(conn)
    worker = worker_register(conn, "w", batches=["b"], concurrency=10)["id"]
    run(conn, worker, 1)  # a
    assert statuses(conn, [a, b]) == ["succeeded", "pending"]
    assert [(r["id"], r["status"]) for r in task_rerun(conn, [a])] == [(a, "pending")]
    assert statuses(conn, [a, b, c, d]) == ["pending", "waiting", "waiting", "waiting"]
    run(conn, worker, 1)
    assert statuses(conn, [a, b]) == ["succeeded", "pending"]
    attempts = conn.execute(
        "SELECT attempt, status FROM scitq.execution WHERE task_id = %s ORDER BY attempt", (a,)
    ).fetchall()
    assert attempts == [(1, "succeeded"), (2, "succeeded")]


def test_rerun_of_failed_tasks_gives_a_fresh_budget_and_skips_live_ones(conn):
    failing = submit(conn, retries=1)
    waiting = submit(conn, depends_on=[failing])
    worker = worker_register(conn, "w", batches=["b"])["id"]
    conn.execute("UPDATE scitq.task SET retry_delay_seconds = 0 WHERE id = %s", (failing,))
    run(conn, worker, 1, return_code=1)
    run(conn, worker, 1, return_code=1)
    assert statuses(conn, [failing, waiting]) == ["failed", "canceled"]
    rerun = {r["id"]: r["status"] for r in task_rerun(conn, [failing, waiting])}
    # the dependent canceled because of it comes back, as a retry restores it
    assert rerun == {failing: "pending", waiting: "waiting"}
    assert task_row(conn, failing)[3:5] == (2, 0)
    # pending and waiting tasks are not rerun
    assert task_rerun(conn, [failing, waiting]) == []


def test_a_retry_after_a_dependency_is_rerun_waits_for_it(conn):
    """failed -> waiting: a task retried while a dependency it had runs again."""
    first = submit(conn, name="first")
    second = submit(conn, depends_on=[first])
    worker = worker_register(conn, "w", batches=["b"])["id"]
    run(conn, worker, 1)
    run(conn, worker, 1, return_code=3)
    assert statuses(conn, [first, second]) == ["succeeded", "failed"]
    task_rerun(conn, [first])
    task_rerun(conn, [second])
    assert statuses(conn, [first, second]) == ["pending", "waiting"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "non-empty JSON object"),
        ({"depends_on": [1]}, "cannot change 'depends_on'"),
        ({"command": ""}, "no command"),
        ({"command": None}, "non-empty string"),
        ({"retries": -1}, "the update: retries must be a whole number"),
        ({"shell": "yes"}, "the update: shell must be a boolean"),
        ({"batch": 3}, "batch name"),
    ],
)
def test_bad_updates_are_refused_with_one_clear_line(conn, changes, message):
    task = submit(conn)
    with pytest.raises(errors.InvalidArgument, match=message):
        task_update(conn, [task], changes)


def test_updating_a_missing_task_says_so(conn):
    with pytest.raises(errors.NotFound, match="task 424242 does not exist"):
        task_update(conn, [424242], {"retries": 1})


def test_agents_may_neither_update_nor_rerun(conn):
    for function in ("task_update_v1", "task_rerun_v1"):
        row = conn.execute(
            "SELECT bool_or(has_function_privilege('scitq_agent', p.oid, 'EXECUTE')), "
            "bool_or(has_function_privilege('scitq_reader', p.oid, 'EXECUTE')), "
            "bool_and(has_function_privilege('scitq_admin', p.oid, 'EXECUTE')) "
            "FROM pg_proc p WHERE p.pronamespace = 'scitq'::regnamespace AND p.proname = %s",
            (function,),
        ).fetchone()
        assert row == (False, False, True), function
    with pytest.raises(psycopg.Error):
        conn.execute("SET ROLE scitq_agent")
        conn.execute("SELECT scitq.task_rerun_v1('{1}')")
    conn.rollback()
