"""Execution lifecycle: phases, finish, retries and back-off, leases, fencing, signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from scitq import errors
from scitq.db.batch import batch_set_requeues, batch_signal
from scitq.db.connection import translated
from scitq.db.execution import (
    execution_append_output,
    execution_expire_leases,
    execution_finish,
    execution_set_phase,
    execution_set_phases,
)
from scitq.db.task import task_cancel, task_claim, task_retry, task_signal, task_submit
from scitq.db.worker import (
    worker_delete,
    worker_heartbeat,
    worker_register,
    worker_stop,
    worker_update,
)

T0 = datetime(2020, 1, 1, tzinfo=UTC)  # in the past: calls without `now` act later


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def setup_one(conn, *, retries=0, retry_delay=10.0, lease=60.0, batch="b"):
    task = task_submit(
        conn,
        batch,
        [{"command": "x", "retries": retries, "retry_delay_seconds": retry_delay}],
        now=at(0),
    )[0]
    worker = worker_register(conn, "w1", batches=[batch], lease_seconds=lease, now=at(0))
    return task["id"], worker["id"]


def task_row(conn, task_id):
    return conn.execute(
        "SELECT status, attempt_count, available_at, cancel_reason FROM scitq.task WHERE id = %s",
        (task_id,),
    ).fetchone()


def test_phases_and_success_record_everything(conn):
    task_id, worker = setup_one(conn)
    (claim,) = task_claim(conn, worker, 1, now=at(1))
    execution = claim["execution_id"]
    execution_set_phase(conn, worker, execution, "downloading", now=at(2))
    execution_set_phase(conn, worker, execution, "running", now=at(3))
    assert task_row(conn, task_id)[0] == "running"
    execution_set_phase(conn, worker, execution, "running", now=at(3.5))  # retried call
    execution_set_phase(conn, worker, execution, "uploading", now=at(4))
    with pytest.raises(errors.InvalidTransition, match="cannot go back to running"):
        execution_set_phase(conn, worker, execution, "running", now=at(4.5))
    result = execution_finish(
        conn,
        worker,
        [
            {
                "execution_id": execution,
                "return_code": 0,
                "wall_seconds": 2.5,
                "cpu_user_seconds": 1.0,
                "cpu_system_seconds": 0.5,
                "peak_rss_bytes": 1234,
                "bytes_in": 10,
                "bytes_out": 20,
            }
        ],
        now=at(5),
    )
    assert result == [
        {
            "execution_id": execution,
            "execution_status": "succeeded",
            "task_id": task_id,
            "task_status": "succeeded",
        }
    ]
    row = conn.execute(
        "SELECT assigned_at, download_started_at, run_started_at, upload_started_at, finished_at, "
        "return_code, failure_class, wall_seconds, cpu_user_seconds, cpu_system_seconds, "
        "peak_rss_bytes, bytes_in, bytes_out FROM scitq.execution WHERE id = %s",
        (execution,),
    ).fetchone()
    assert row == (at(1), at(2), at(3), at(4), at(5), 0, None, 2.5, 1.0, 0.5, 1234, 10, 20)
    events = conn.execute(
        "SELECT from_status, to_status, at FROM scitq.task_event WHERE task_id = %s ORDER BY id",
        (task_id,),
    ).fetchall()
    assert events == [
        (None, "pending", at(0)),
        ("pending", "assigned", at(1)),
        ("assigned", "running", at(3)),
        ("running", "succeeded", at(5)),
    ]


def test_failure_retries_with_exponential_back_off_then_fails(conn):
    task_id, worker = setup_one(conn, retries=2, retry_delay=10)
    for attempt, (start, back_off) in enumerate([(1, 10), (20, 20)], start=1):
        (claim,) = task_claim(conn, worker, 1, now=at(start))
        assert claim["attempt"] == attempt
        execution_finish(
            conn,
            worker,
            [{"execution_id": claim["execution_id"], "return_code": 3}],
            now=at(start + 1),
        )
        status, count, available_at, _ = task_row(conn, task_id)
        assert (status, count, available_at) == ("pending", attempt, at(start + 1 + back_off))
        # not claimable during the back-off
        assert task_claim(conn, worker, 1, now=at(start + back_off)) == []
    (claim,) = task_claim(conn, worker, 1, now=at(60))
    assert claim["attempt"] == 3
    execution_finish(
        conn, worker, [{"execution_id": claim["execution_id"], "return_code": 3}], now=at(61)
    )
    assert task_row(conn, task_id)[:2] == ("failed", 3)
    classes = conn.execute(
        "SELECT status, failure_class, return_code FROM scitq.execution "
        "WHERE task_id = %s ORDER BY attempt",
        (task_id,),
    ).fetchall()
    assert classes == [("failed", "exit", 3)] * 3


def test_failure_classes(conn):
    task_submit(conn, "b", [{"command": str(i)} for i in range(4)])
    worker = worker_register(conn, "w", batches=["b"], concurrency=4)["id"]
    claims = task_claim(conn, worker, 4)
    results = [
        {"execution_id": claims[0]["execution_id"], "failure_class": "timeout", "return_code": -15},
        {"execution_id": claims[1]["execution_id"], "failure_class": "oom", "return_code": 137},
        {
            "execution_id": claims[2]["execution_id"],
            "failure_class": "download",
            "failure_reason": "s3://x/y: NoSuchKey",
        },
        {"execution_id": claims[3]["execution_id"]},
    ]
    rows = execution_finish(conn, worker, results)
    assert [r["execution_status"] for r in rows] == ["timeout", "failed", "failed", "failed"]
    stored = conn.execute(
        "SELECT failure_class, failure_reason FROM scitq.execution ORDER BY id"
    ).fetchall()
    assert stored == [
        ("timeout", None),
        ("oom", None),
        ("download", "s3://x/y: NoSuchKey"),
        ("exit", "no return code reported"),
    ]


@pytest.mark.parametrize(
    "result",
    [
        {"return_code": 0, "failure_class": "bogus"},
        {"return_code": 0, "wall_seconds": -1},
        {"return_code": 0, "peak_rss_bytes": -5},
        {"return_code": "zero"},
    ],
)
def test_bad_results_change_nothing(conn, result):
    task_id, worker = setup_one(conn)
    (claim,) = task_claim(conn, worker, 1)
    with pytest.raises(errors.InvalidArgument):
        execution_finish(conn, worker, [{"execution_id": claim["execution_id"], **result}])
    assert task_row(conn, task_id)[0] == "assigned"
    assert conn.execute("SELECT status FROM scitq.execution").fetchone() == ("assigned",)


def _requeues(conn, task_id):
    return conn.execute(
        "SELECT attempt_count, attempts_used, requeue_count, requeues FROM scitq.task_overview "
        "WHERE task_id = %s",
        (task_id,),
    ).fetchone()


def test_lease_expiry_marks_lost_and_requeues_without_a_retry(conn):
    """retries 0 (the default): a lost execution is requeued at once, free, up to the
    task's requeues (3 by default); the fourth loss fails the task and says why."""
    task_id, worker = setup_one(conn, lease=30)
    (claim,) = task_claim(conn, worker, 1, now=at(0))
    # heartbeats renew the lease
    beat = worker_heartbeat(conn, worker, [claim["execution_id"]], now=at(25))
    assert beat["dead_execution_ids"] == []
    assert execution_expire_leases(conn, now=at(50)) == []
    expired = execution_expire_leases(conn, now=at(56))
    assert expired == [{"execution_id": claim["execution_id"], "task_id": task_id}]
    assert conn.execute(
        "SELECT status, failure_class, finished_at FROM scitq.execution WHERE id = %s",
        (claim["execution_id"],),
    ).fetchone() == ("lost", "lost", at(56))
    # pending at once (no back-off), no retry spent: 0 attempts used, 1 free requeue
    assert task_row(conn, task_id)[:3] == ("pending", 1, at(56))
    assert _requeues(conn, task_id) == (1, 0, 1, 3)
    for loss in (2, 3, 4):
        start = 100 * loss
        (claimed,) = task_claim(conn, worker, 1, now=at(start))
        assert claimed["attempt"] == loss
        assert execution_expire_leases(conn, now=at(start + 31))[0]["task_id"] == task_id
    # three free requeues used, the fourth loss fails the task, with the reason
    assert task_row(conn, task_id)[0] == "failed"
    assert _requeues(conn, task_id) == (4, 1, 3, 3)
    reason = conn.execute(
        "SELECT failure_reason FROM scitq.task_overview WHERE task_id = %s", (task_id,)
    ).fetchone()[0]
    assert reason == (
        "lease expired: the worker stopped heartbeating; "
        "no free requeue left (3 of 3 used): the task fails"
    )
    # a retry by a user gives fresh retries and fresh requeues
    task_retry(conn, [task_id], now=at(600))
    assert _requeues(conn, task_id) == (4, 0, 0, 3)


def test_requeues_per_task_and_per_batch(conn):
    (task,) = task_submit(conn, "b", [{"command": "x", "requeues": 0}], now=at(0))
    worker = worker_register(conn, "w1", batches=["b"], lease_seconds=30, now=at(0))["id"]
    task_claim(conn, worker, 1, now=at(0))
    execution_expire_leases(conn, now=at(31))
    assert task_row(conn, task["id"])[0] == "failed"  # no free requeue at all
    # past its free requeues, a loss spends a retry when there is one (after the back-off)
    (spender,) = task_submit(conn, "b", [{"command": "x", "requeues": 0, "retries": 1}], now=at(0))
    task_claim(conn, worker, 1, now=at(32))
    execution_expire_leases(conn, now=at(63))
    assert task_row(conn, spender["id"])[:3] == ("pending", 1, at(73))
    assert _requeues(conn, spender["id"]) == (1, 1, 0, 0)
    assert batch_set_requeues(conn, "b", 5) == 2
    (later,) = task_submit(conn, "b", [{"command": "y"}], now=at(40))
    assert _requeues(conn, later["id"])[3] == 5
    with pytest.raises(errors.InvalidArgument):
        task_submit(conn, "b", [{"command": "z", "requeues": -1}])


def test_fencing_refuses_a_lost_executions_late_writes(conn):
    task_id, worker = setup_one(conn, retries=1, lease=30)
    (claim,) = task_claim(conn, worker, 1, now=at(0))
    old = claim["execution_id"]
    execution_append_output(conn, worker, [(old, 0, "stdout", "before\n")], now=at(5))
    # the agent freezes; claiming after the lease rescues the task on another worker
    other = worker_register(conn, "w2", batches=["b"], lease_seconds=30, now=at(40))["id"]
    # the claim marks it lost and requeues it at once, without a back-off
    (claim2,) = task_claim(conn, other, 1, now=at(50))
    assert claim2["task_id"] == task_id and claim2["attempt"] == 2
    # the frozen agent wakes up: every write is refused with the execution named
    with pytest.raises(errors.ExecutionNotLive) as caught:
        execution_append_output(conn, worker, [(old, 1, "stdout", "late\n")], now=at(62))
    assert caught.value.execution_ids == (old,)
    with pytest.raises(errors.ExecutionNotLive):
        execution_finish(conn, worker, [{"execution_id": old, "return_code": 0}], now=at(62))
    with pytest.raises(errors.ExecutionNotLive):
        execution_set_phase(conn, worker, old, "running", now=at(62))
    beat = worker_heartbeat(conn, worker, [old], now=at(62))
    assert beat["dead_execution_ids"] == [old]
    # nothing changed: the old execution is lost, the new one holds the task
    assert conn.execute("SELECT id, status FROM scitq.execution ORDER BY id").fetchall() == [
        (old, "lost"),
        (claim2["execution_id"], "assigned"),
    ]
    assert conn.execute(
        "SELECT seq, text FROM scitq.execution_output WHERE execution_id = %s", (old,)
    ).fetchall() == [(0, "before\n")]
    # another worker cannot write for the new execution either
    with pytest.raises(errors.ExecutionNotLive):
        execution_finish(
            conn, worker, [{"execution_id": claim2["execution_id"], "return_code": 0}], now=at(63)
        )
    execution_finish(
        conn, other, [{"execution_id": claim2["execution_id"], "return_code": 0}], now=at(64)
    )
    assert task_row(conn, task_id)[0] == "succeeded"


def test_expired_but_unswept_lease_is_already_refused(conn):
    _, worker = setup_one(conn, lease=30)
    (claim,) = task_claim(conn, worker, 1, now=at(0))
    with pytest.raises(errors.ExecutionNotLive):
        execution_finish(
            conn, worker, [{"execution_id": claim["execution_id"], "return_code": 0}], now=at(31)
        )
    beat = worker_heartbeat(conn, worker, [claim["execution_id"]], now=at(31))
    assert beat["dead_execution_ids"] == [claim["execution_id"]]


def test_a_batch_of_finishes_with_one_dead_execution_changes_nothing(conn):
    task_submit(conn, "b", [{"command": "a"}, {"command": "b"}])
    worker = worker_register(conn, "w", batches=["b"], concurrency=2)["id"]
    first, second = task_claim(conn, worker, 2)
    task_cancel(conn, [second["task_id"]])
    with pytest.raises(errors.ExecutionNotLive) as caught:
        execution_finish(
            conn,
            worker,
            [
                {"execution_id": first["execution_id"], "return_code": 0},
                {"execution_id": second["execution_id"], "return_code": 0},
            ],
        )
    assert caught.value.execution_ids == (second["execution_id"],)
    assert conn.execute("SELECT status FROM scitq.execution ORDER BY id").fetchall() == [
        ("assigned",),
        ("canceled",),
    ]


def test_output_append_is_idempotent_and_escapes_bad_bytes(conn):
    _, worker = setup_one(conn)
    (claim,) = task_claim(conn, worker, 1)
    execution = claim["execution_id"]
    chunks = [
        (execution, 0, "stdout", b"ok \xff\xfe bytes\n"),
        (execution, 1, "stderr", "nul \x00 inside\n"),
        (execution, 2, "stdout", b"\x00\x01binary"),
    ]
    assert execution_append_output(conn, worker, chunks) == 3
    assert execution_append_output(conn, worker, chunks) == 0  # redelivered: stored once
    rows = conn.execute(
        "SELECT seq, stream, text FROM scitq.execution_output ORDER BY seq"
    ).fetchall()
    assert rows == [
        (0, "stdout", "ok \\xff\\xfe bytes\n"),
        (1, "stderr", "nul \\x00 inside\n"),
        (2, "stdout", "\\x00\x01binary"),
    ]


def test_raw_bad_text_through_sql_fails_whole_call(conn):
    """A psql or foreign client that skips the escaping gets an error and stores nothing."""
    _, worker = setup_one(conn)
    (claim,) = task_claim(conn, worker, 1)
    execution = claim["execution_id"]
    call = "SELECT scitq.execution_append_output_v1(%s, %s, %s, %s::scitq.output_stream[], %s)"
    with pytest.raises(psycopg.DataError, match="NUL"):
        conn.execute(call, (worker, [execution] * 2, [0, 1], ["stdout"] * 2, ["fine", "bad\x00"]))
    with pytest.raises(errors.InvalidArgument, match="same length"), translated():
        conn.execute(call, (worker, [execution], [0, 1], ["stdout"], ["x"]))
    with pytest.raises(errors.InvalidArgument, match="sequence number"), translated():
        conn.execute(call, (worker, [execution], [-1], ["stdout"], ["x"]))
    # invalid UTF-8 in the statement itself is rejected by the server
    statement = (
        b"SELECT scitq.execution_append_output_v1(%d, ARRAY[%d]::bigint[], '{0}', '{stdout}', "
        b"ARRAY['ok \xc3\x28 not utf-8'])" % (worker, execution)
    )
    with pytest.raises(errors.InvalidArgument, match=r"(?i)byte sequence"), translated():
        conn.execute(statement)
    assert conn.execute("SELECT count(*) FROM scitq.execution_output").fetchone() == (0,)


def test_signals_are_delivered_by_heartbeat_until_acknowledged(conn):
    task_id, worker = setup_one(conn)
    (claim,) = task_claim(conn, worker, 1)
    assert task_signal(conn, [task_id], "pause") == 1
    assert batch_signal(conn, "b", "kill") == 1
    beat = worker_heartbeat(conn, worker, [claim["execution_id"]])
    kinds = [(s["execution_id"], s["kind"]) for s in beat["signals"]]
    assert kinds == [(claim["execution_id"], "pause"), (claim["execution_id"], "kill")]
    again = worker_heartbeat(conn, worker, [claim["execution_id"]])
    assert again["signals"] == beat["signals"]  # not acknowledged yet
    acked = worker_heartbeat(
        conn, worker, [claim["execution_id"]], acked_signal_ids=[s["id"] for s in beat["signals"]]
    )
    assert acked["signals"] == []


def test_heartbeat_returns_configuration_changes(conn):
    _, worker = setup_one(conn)
    first = worker_heartbeat(conn, worker)
    worker_update(conn, worker, concurrency=7, prefetch=2, is_paused=True)
    second = worker_heartbeat(conn, worker)
    assert second["config_version"] > first["config_version"]
    assert (second["concurrency"], second["prefetch"], second["is_paused"]) == (7, 2, True)


def test_worker_restart_hands_back_its_executions(conn):
    task_id, worker = setup_one(conn, retries=0)
    task_claim(conn, worker, 1)
    again = worker_register(conn, "w1", batches=["b"])
    assert again["id"] == worker
    assert conn.execute("SELECT status, failure_reason FROM scitq.execution").fetchone() == (
        "lost",
        "the worker restarted while it held this execution",
    )
    # a lost attempt spends no retry: with retries 0 the task is pending again, requeued
    assert task_row(conn, task_id)[0] == "pending"
    assert _requeues(conn, task_id) == (1, 0, 1, 3)


def test_worker_stop_hands_back_without_using_a_retry(conn):
    task_id, worker = setup_one(conn, retries=0)
    task_claim(conn, worker, 1)
    assert worker_stop(conn, worker) == 1
    status, attempts, _, _ = task_row(conn, task_id)
    assert (status, attempts) == ("pending", 1)
    assert _requeues(conn, task_id) == (1, 0, 1, 3)  # handed back: a free requeue
    assert conn.execute("SELECT status FROM scitq.worker").fetchone() == ("stopped",)
    other = worker_register(conn, "w2", batches=["b"])["id"]
    (claim,) = task_claim(conn, other, 1)
    execution_finish(conn, other, [{"execution_id": claim["execution_id"], "return_code": 1}])
    assert task_row(conn, task_id)[0] == "failed"  # the one real attempt failed, no retry


def test_worker_delete_requeues_and_keeps_history(conn):
    task_id, worker = setup_one(conn, retries=1)
    task_claim(conn, worker, 1)
    worker_delete(conn, worker)
    assert conn.execute(
        "SELECT worker_id, worker_name, status FROM scitq.execution"
    ).fetchone() == (None, "w1", "lost")
    assert task_row(conn, task_id)[0] == "pending"
    with pytest.raises(errors.NotFound, match=r"worker .* does not exist"):
        worker_heartbeat(conn, worker)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": -1}, "concurrency"),
        ({"prefetch": -2}, "prefetch"),
        ({"lease_seconds": 0}, "lease"),
    ],
)
def test_bad_worker_settings(conn, kwargs, message):
    with pytest.raises(errors.InvalidArgument, match=message):
        worker_register(conn, "w", **kwargs)
    assert conn.execute("SELECT count(*) FROM scitq.worker").fetchone() == (0,)
    if "lease_seconds" not in kwargs:
        worker = worker_register(conn, "w")["id"]
        with pytest.raises(errors.InvalidArgument, match=message):
            worker_update(conn, worker, **kwargs)


def test_set_phases_moves_many_forward_only_and_names_every_dead_one(conn):
    tasks = task_submit(conn, "b", [{"command": "x"}] * 4, now=at(0))
    worker = worker_register(conn, "w1", batches=["b"], concurrency=4, lease_seconds=60, now=at(0))[
        "id"
    ]
    claims = task_claim(conn, worker, 4, now=at(1))
    ids = [claim["execution_id"] for claim in claims]
    assert execution_set_phases(conn, worker, ids[:1], "downloading", now=at(2)) == 1
    assert execution_set_phases(conn, worker, ids, "running", now=at(3)) == 4
    # a retried call, and one arriving after a later phase, change nothing
    assert execution_set_phases(conn, worker, ids, "running", now=at(4)) == 0
    execution_set_phases(conn, worker, ids[:1], "uploading", now=at(5))
    assert execution_set_phases(conn, worker, ids[:1], "running", now=at(6)) == 0
    rows = conn.execute(
        "SELECT status, download_started_at, run_started_at, upload_started_at"
        " FROM scitq.execution WHERE id = ANY(%s) ORDER BY id",
        (ids,),
    ).fetchall()
    assert rows[0] == ("uploading", at(2), at(3), at(5))
    assert all(row == ("running", None, at(3), None) for row in rows[1:])
    statuses = conn.execute(
        "SELECT status FROM scitq.task WHERE id = ANY(%s)", ([t["id"] for t in tasks],)
    ).fetchall()
    assert statuses == [("running",)] * 4
    assert execution_set_phases(conn, worker, [], "running", now=at(7)) == 0

    # two executions lost: the call names both and changes nothing
    task_cancel(conn, [claims[1]["task_id"], claims[3]["task_id"]], now=at(8))
    with pytest.raises(errors.ExecutionNotLive) as lost:
        execution_set_phases(conn, worker, ids, "uploading", now=at(9))
    assert sorted(lost.value.execution_ids) == [ids[1], ids[3]]
    assert conn.execute(
        "SELECT count(*) FROM scitq.execution WHERE status = 'uploading'"
    ).fetchone() == (1,)
    with pytest.raises(errors.InvalidArgument, match="phase must be"):
        execution_set_phases(conn, worker, ids[:1], "succeeded", now=at(10))


def test_a_cancel_racing_a_finish_waits_for_it_instead_of_deadlocking(db, conn):
    """An agent's finish locks its executions, then their tasks; a cancel of the same task
    must take them in that order too. Here the finish has locked its execution (as
    execution_finish_v1 does first) when the cancel starts: before the fix the cancel
    locked the task and waited for the execution, the finish then waited for the task,
    and PostgreSQL broke the deadlock by failing one of them."""
    import threading

    task_id, worker = setup_one(conn)
    (claim,) = task_claim(conn, worker, 1, now=at(1))
    execution = claim["execution_id"]
    outcome: dict[str, object] = {}

    def cancel() -> None:
        with psycopg.connect(db, autocommit=True) as other:
            try:
                outcome["canceled"] = task_cancel(other, [task_id], now=at(2))
            except Exception as exc:  # the failure is the result here
                outcome["error"] = exc

    with psycopg.connect(db) as agent:  # one transaction, as the agent's finish
        agent.execute("SELECT 1 FROM scitq.execution WHERE id = %s FOR UPDATE", (execution,))
        canceller = threading.Thread(target=cancel)
        canceller.start()
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while datetime.now(UTC) < deadline:  # until the cancel waits for a lock
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE %s",
                ("%task_cancel_v1%",),
            ).fetchone()
            if waiting == (1,):
                break
        else:
            pytest.fail("the cancel never waited for the finish's lock")
        with translated():
            execution_finish(agent, worker, [{"execution_id": execution, "return_code": 0}], at(2))
        agent.commit()
    canceller.join(timeout=30)
    assert "error" not in outcome, outcome
    assert outcome["canceled"] == []  # the finish came first: nothing left to cancel
    assert task_row(conn, task_id)[0] == "succeeded"


def test_a_signal_racing_an_agent_call_neither_waits_nor_deadlocks(db, conn):
    """An agent's call locks its worker row (worker_check_v1), then its executions; a
    signal inserts rows referencing both (foreign key checks: FOR KEY SHARE). With the
    worker locked FOR UPDATE the signal waited for the agent while holding a share lock
    on the execution, which the agent's next statement then needed: deadlock."""
    task_id, worker = setup_one(conn)
    (claim,) = task_claim(conn, worker, 1, now=at(1))
    execution = claim["execution_id"]
    with psycopg.connect(db) as agent:  # one transaction, as an agent's report pass
        agent.execute("SELECT scitq.worker_check_v1(%s)", (worker,))
        with psycopg.connect(db, autocommit=True) as other:
            other.execute("SET lock_timeout = '5s'")  # waiting at all is the failure here
            with translated():
                assert task_signal(other, [task_id], "pause", now=at(2)) == 1
        with translated():
            execution_set_phase(agent, worker, execution, "running", now=at(3))
        agent.commit()
    assert task_row(conn, task_id)[0] == "running"
