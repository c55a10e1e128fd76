"""Submission: bulk, dependencies by id and by name, cycles, bad input, NOTIFY."""

from __future__ import annotations

import psycopg
import pytest

from scitq import errors
from scitq.db.batch import batch_cancel, batch_delete, batch_pause, batch_resume, batch_retry
from scitq.db.execution import execution_finish
from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_register


def test_bulk_submit_keeps_order_and_fields(conn):
    tasks = [
        {
            "command": f"echo {i}",
            "name": f"t{i}",
            "priority": i % 3,
            "retries": 2,
            "env": {"A": str(i)},
            "inputs": [f"s3://b/in{i}"],
            "tags": ["x"],
        }
        for i in range(2000)
    ]
    rows = task_submit(conn, "bulk", tasks)
    assert [r["name"] for r in rows] == [f"t{i}" for i in range(2000)]
    assert {r["status"] for r in rows} == {"pending"}
    stored = conn.execute(
        "SELECT command, priority, retries, env, inputs, tags FROM scitq.task WHERE id = %s",
        (rows[7]["id"],),
    ).fetchone()
    assert stored == ("echo 7", 1, 2, {"A": "7"}, ["s3://b/in7"], ["x"])
    events = conn.execute("SELECT count(*) FROM scitq.task_event").fetchone()
    assert events == (2000,)


def test_single_add_for_psql_users(conn):
    task_id = conn.execute(
        "SELECT scitq.task_add_v1('one', 'echo hi', p_name => 'hi', p_retries => 3)"
    ).fetchone()[0]
    row = conn.execute(
        "SELECT t.name, t.retries, t.status, b.name FROM scitq.task t "
        "JOIN scitq.batch b ON b.id = t.batch_id WHERE t.id = %s",
        (task_id,),
    ).fetchone()
    assert row == ("hi", 3, "pending", "one")


def test_dependencies_by_name_and_id(conn):
    first = task_submit(conn, "deps", [{"command": "a", "name": "a"}])[0]
    rows = task_submit(
        conn,
        "deps",
        [
            {"command": "b", "name": "b", "depends_on": [first["id"]]},
            {"command": "c", "name": "c", "depends_on_names": ["a", "b"]},
        ],
    )
    assert [r["status"] for r in rows] == ["waiting", "waiting"]
    edges = conn.execute(
        "SELECT task_id, depends_on_id FROM scitq.task_dependency ORDER BY 1, 2"
    ).fetchall()
    b, c = rows[0]["id"], rows[1]["id"]
    assert edges == sorted([(b, first["id"]), (c, first["id"]), (c, b)])


def test_dependency_on_succeeded_task_is_pending_and_on_failed_is_canceled(conn):
    done = task_submit(conn, "d", [{"command": "ok", "name": "ok"}])[0]["id"]
    bad = task_submit(conn, "d", [{"command": "bad", "name": "bad"}])[0]["id"]
    worker = worker_register(conn, "w", batches=["d"], concurrency=2)
    claimed = {r["task_id"]: r["execution_id"] for r in task_claim(conn, worker["id"], 2)}
    execution_finish(
        conn,
        worker["id"],
        [
            {"execution_id": claimed[done], "return_code": 0},
            {"execution_id": claimed[bad], "return_code": 1},
        ],
    )
    rows = task_submit(
        conn,
        "d",
        [
            {"command": "x", "name": "after-ok", "depends_on": [done]},
            {"command": "y", "name": "after-bad", "depends_on": [bad]},
            {"command": "z", "name": "after-after-bad", "depends_on_names": ["after-bad"]},
        ],
    )
    assert [r["status"] for r in rows] == ["pending", "canceled", "canceled"]
    reasons = conn.execute(
        "SELECT cancel_reason, canceled_by_task_id FROM scitq.task WHERE id = ANY(%s) ORDER BY id",
        ([rows[1]["id"], rows[2]["id"]],),
    ).fetchall()
    assert reasons == [(f"dependency task {bad} failed", bad)] * 2


@pytest.mark.parametrize(
    ("tasks", "error", "message"),
    [
        (
            [
                {"command": "a", "name": "a", "depends_on_names": ["b"]},
                {"command": "b", "name": "b", "depends_on_names": ["a"]},
            ],
            errors.DependencyCycle,
            "task #1 depends on itself",
        ),
        (
            [{"command": "a", "name": "a", "depends_on_names": ["a"]}],
            errors.DependencyCycle,
            "depends on itself",
        ),
        ([{"command": "a", "depends_on_names": ["nobody"]}], errors.NotFound, "name that no task"),
        (
            [{"command": "a", "depends_on": [987654]}],
            errors.NotFound,
            "task 987654, which does not exist",
        ),
        ([{"command": ""}], errors.InvalidArgument, "task #1 has no command"),
        ([{"command": "ok"}, {"name": "x"}], errors.InvalidArgument, "task #2 has no command"),
        ([{"command": "a", "retry": 3}], errors.InvalidArgument, "unknown field 'retry'"),
        (
            [{"command": "a", "env": {"A": 1}}],
            errors.InvalidArgument,
            "env must be an object of strings",
        ),
        ([{"command": "a", "inputs": "s3://x"}], errors.InvalidArgument, "must be arrays"),
        ([{"command": "a", "retries": -1}], errors.InvalidArgument, "task #1: retries must be"),
        ([{"command": "a"}, {"command": "a", "retries": 1.5}], errors.InvalidArgument, "task #2"),
        ([{"command": "a", "retries": "two"}], errors.InvalidArgument, "retries must be a number"),
        ([{"command": "a", "shell": "yes"}], errors.InvalidArgument, "shell must be a boolean"),
        ([{"command": "a", "depends_on": ["abc"]}], errors.InvalidArgument, "must list task ids"),
        ([{"command": "a", "retry_delay_seconds": -1}], errors.InvalidArgument, "task #1"),
        (
            [{"command": "a", "run_timeout_seconds": 0}],
            errors.InvalidArgument,
            "timeouts more than 0",
        ),
        ([{"command": "a", "priority": "high"}], errors.InvalidArgument, "priority must be"),
        ([{"command": "a", "priority": 1e12}], errors.InvalidArgument, "priority a whole number"),
        ([], errors.InvalidArgument, "non-empty JSON array"),
    ],
)
def test_bad_submissions_are_refused_whole(conn, tasks, error, message):
    task_submit(conn, "bad", [{"command": "before", "name": "b0"}])
    with pytest.raises(error, match=message):
        task_submit(conn, "bad", tasks)
    assert conn.execute("SELECT count(*) FROM scitq.task").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM scitq.task_dependency").fetchone() == (0,)


@pytest.mark.parametrize("batch", ["", "a/b", "tab\there"])
def test_bad_batch_names(conn, batch):
    with pytest.raises(errors.InvalidArgument, match="invalid batch name"):
        task_submit(conn, batch, [{"command": "x"}])


def test_unknown_batch_in_batch_actions(conn):
    for action in (
        batch_pause,
        batch_resume,
        batch_retry,
        batch_delete,
        batch_cancel,
    ):
        with pytest.raises(errors.NotFound, match="batch 'ghost' does not exist"):
            action(conn, "ghost")


def test_notify_on_submit_is_sent_at_commit_and_coalesced(db):
    with psycopg.connect(db, autocommit=True) as listener, psycopg.connect(db) as writer:
        listener.execute("LISTEN scitq_task_pending_v1")
        task_submit(writer, "n", [{"command": "a"}])
        task_submit(writer, "n", [{"command": "b"}])
        # nothing before the commit
        assert list(listener.notifies(timeout=0.3, stop_after=1)) == []
        writer.commit()
        received = list(listener.notifies(timeout=2, stop_after=5))
        assert [n.payload for n in received] == ["n"]
