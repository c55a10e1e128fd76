"""The scheduler's duties, run in-process against a real database at chosen times."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from scitq import errors
from scitq.config import SchedulerSettings
from scitq.db.execution import execution_append_output, execution_finish, execution_set_phase
from scitq.db.scheduler import scheduler_lock_holder, scheduler_lock_try, scheduler_record
from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_delete, worker_heartbeat, worker_register, worker_stop
from scitq.scheduler import duties, schedule
from scitq.scheduler.duties import DutyContext
from scitq.scheduler.leadership import SCHEDULER_LOCK, LeadershipLost

T0 = datetime(2020, 1, 1, tzinfo=UTC)  # in the past: calls without `now` act later


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def context(conn, seconds: float, **settings) -> DutyContext:
    return DutyContext(
        conn=conn,
        settings=dataclasses.replace(SchedulerSettings(), **settings),
        scheduler="test-host:1",
        now=at(seconds),
    )


def decisions(conn, duty: str) -> list[dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT * FROM scitq.scheduler_log WHERE duty = %s ORDER BY id", (duty,)
        ).fetchall()


def claim_one(conn, *, lease=60.0, worker_name="w1", **task):
    """A worker (this superuser session owns it) holding one claimed task, at T0."""
    worker = worker_register(conn, worker_name, lease_seconds=lease, now=at(0))["id"]
    (submitted,) = task_submit(conn, "b", [{"command": "true", **task}], now=at(0))
    (claim,) = task_claim(conn, worker, 1, now=at(0))
    assert claim["task_id"] == submitted["id"]
    return worker, claim


def status(conn, table: str, row_id: int) -> str:
    return conn.execute(f"SELECT status FROM scitq.{table} WHERE id = %s", (row_id,)).fetchone()[0]


# -- lease expiry -------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "task_status", "fate"), [
    # a loss spends no retry (issue 15.1): free requeues first
    ({"retries": 0}, "pending", "requeued without spending a retry (free requeue 1 of 3)"),
    ({"retries": 1, "requeues": 0}, "pending", "requeued, claimable from"),
    ({"retries": 0, "requeues": 0}, "failed", "failed: no free requeue nor retry left"),
])  # fmt: skip
def test_expiry_marks_the_execution_lost_and_requeues_or_fails_the_task(
    conn, task, task_status, fate
):
    _, claim = claim_one(conn, lease=30, **task)
    assert duties.expire_leases(context(conn, 29)) == 0
    assert status(conn, "execution", claim["execution_id"]) == "assigned"

    assert duties.expire_leases(context(conn, 31)) == 1
    assert status(conn, "execution", claim["execution_id"]) == "lost"
    assert status(conn, "task", claim["task_id"]) == task_status
    (decision,) = decisions(conn, "expire_leases")
    assert decision["subject_kind"] == "execution"
    assert decision["subject_id"] == claim["execution_id"]
    assert decision["decision"] == "lost"
    assert decision["at"] == at(31)
    assert decision["scheduler"] == "test-host:1"
    assert "worker w1 stopped heartbeating" in decision["reason"]
    assert f"task {claim['task_id']} {fate}" in decision["reason"]
    assert decision["details"]["task_status"] == task_status
    assert decision["details"]["attempt"] == 1

    assert duties.expire_leases(context(conn, 40)) == 0  # idempotent
    assert len(decisions(conn, "expire_leases")) == 1


def test_expiry_goes_on_past_one_batch_of_executions(conn):
    count = duties.EXPIRE_BATCH + 5
    worker = worker_register(conn, "big", concurrency=count, lease_seconds=30, now=at(0))
    worker = worker["id"]
    task_submit(conn, "b", [{"command": "true"}] * count, now=at(0))
    assert len(task_claim(conn, worker, count, now=at(0))) == count

    assert duties.expire_leases(context(conn, 31)) == count
    live = conn.execute("SELECT count(*) FROM scitq.execution WHERE status <> 'lost'")
    assert live.fetchone() == (0,)
    assert len(decisions(conn, "expire_leases")) == count


# -- timeouts -----------------------------------------------------------------------------


def kill_signals(conn, execution_id: int) -> int:
    return conn.execute(
        "SELECT count(*) FROM scitq.signal WHERE execution_id = %s AND kind = 'kill'",
        (execution_id,),
    ).fetchone()[0]


@pytest.mark.parametrize(("phase", "timeout_field"), [
    ("running", "run_timeout_seconds"),
    ("downloading", "download_timeout_seconds"),
])  # fmt: skip
def test_an_execution_past_its_timeout_is_killed_then_marked(conn, phase, timeout_field):
    worker, claim = claim_one(conn, lease=3600, retries=1, **{timeout_field: 100})
    execution = claim["execution_id"]
    execution_set_phase(conn, worker, execution, phase, now=at(5))
    grace = 60  # the default

    # within timeout + grace: left alone
    assert duties.enforce_timeouts(context(conn, 5 + 100 + grace - 1)) == 0
    assert kill_signals(conn, execution) == 0

    # past it: a kill signal, which the agent's next heartbeat brings
    assert duties.enforce_timeouts(context(conn, 5 + 100 + grace + 1)) == 1
    assert kill_signals(conn, execution) == 1
    beat = worker_heartbeat(conn, worker, [execution], now=at(170))
    assert [(s["execution_id"], s["kind"]) for s in beat["signals"]] == [(execution, "kill")]
    (kill,) = decisions(conn, "timeouts")
    assert (kill["subject_id"], kill["decision"]) == (execution, "kill")
    what = "run" if phase == "running" else "download"
    assert f"over its {what} timeout of 100 s" in kill["reason"]

    # signaled, within the grace after the signal: not signaled twice, not marked
    assert duties.enforce_timeouts(context(conn, 166 + grace - 1)) == 0
    assert kill_signals(conn, execution) == 1
    assert status(conn, "execution", execution) == phase

    # still live a grace after the signal: marked timeout, task retried
    assert duties.enforce_timeouts(context(conn, 166 + grace + 1)) == 1
    row = conn.execute(
        "SELECT status, failure_class, failure_reason FROM scitq.execution WHERE id = %s",
        (execution,),
    ).fetchone()
    assert row[:2] == ("timeout", "timeout")
    assert "after a kill signal" in row[2]
    assert status(conn, "task", claim["task_id"]) == "pending"
    marked = decisions(conn, "timeouts")[-1]
    assert (marked["subject_id"], marked["decision"]) == (execution, "timeout")
    assert marked["details"]["task_status"] == "pending"
    # the agent is told to stop its copy
    beat = worker_heartbeat(conn, worker, [execution], now=at(300))
    assert beat["dead_execution_ids"] == [execution]

    assert duties.enforce_timeouts(context(conn, 400)) == 0
    assert len(decisions(conn, "timeouts")) == 2


def test_timeouts_spare_queued_executions_and_tasks_without_timeout(conn):
    worker = worker_register(conn, "w1", concurrency=1, prefetch=1, lease_seconds=3600, now=at(0))[
        "id"
    ]
    task_submit(conn, "b", [
        {"command": "no limit"},
        {"command": "queued", "download_timeout_seconds": 1, "run_timeout_seconds": 1},
    ], now=at(0))  # fmt: skip
    first, _queued = task_claim(conn, worker, 2, now=at(0))
    execution_set_phase(conn, worker, first["execution_id"], "running", now=at(1))
    # the queued one waits for a run slot (assigned), which is no download
    assert duties.enforce_timeouts(context(conn, 3000)) == 0
    assert conn.execute("SELECT count(*) FROM scitq.signal").fetchone()[0] == 0


# -- worker liveness ----------------------------------------------------------------------


def test_worker_liveness_changes_are_recorded_once_each(conn):
    worker = worker_register(conn, "w1", lease_seconds=60, now=at(0))["id"]
    assert duties.track_worker_liveness(context(conn, 1)) == 1  # first seen: online
    assert duties.track_worker_liveness(context(conn, 30)) == 0
    assert duties.track_worker_liveness(context(conn, 61)) == 1  # silent for a lease
    assert duties.track_worker_liveness(context(conn, 90)) == 0
    worker_heartbeat(conn, worker, now=at(100))
    assert duties.track_worker_liveness(context(conn, 101)) == 1
    worker_stop(conn, worker, now=at(120))
    assert duties.track_worker_liveness(context(conn, 121)) == 1
    assert duties.track_worker_liveness(context(conn, 500)) == 0

    recorded = decisions(conn, "worker_liveness")
    assert [(d["decision"], d["at"]) for d in recorded] == [
        ("online", at(1)),
        ("offline", at(61)),
        ("online", at(101)),
        ("stopped", at(121)),
    ]
    assert {d["subject_id"] for d in recorded} == {worker}
    assert recorded[0]["reason"] == "worker w1 first seen by the scheduler"
    assert recorded[1]["details"]["previous"] == "online"
    assert "sent no heartbeat since" in recorded[1]["reason"]
    assert recorded[2]["reason"] == "worker w1 heartbeats again"


def test_a_deleted_worker_leaves_its_decisions(conn):
    worker = worker_register(conn, "w1", lease_seconds=60, now=at(0))["id"]
    duties.track_worker_liveness(context(conn, 1))
    worker_delete(conn, worker, now=at(2))
    assert duties.track_worker_liveness(context(conn, 3)) == 0
    assert conn.execute("SELECT count(*) FROM scitq.worker_liveness").fetchone()[0] == 0
    assert len(decisions(conn, "worker_liveness")) == 1


# -- retention ----------------------------------------------------------------------------


def output_rows(conn, execution_id: int) -> int:
    return conn.execute(
        "SELECT count(*) FROM scitq.execution_output WHERE execution_id = %s", (execution_id,)
    ).fetchone()[0]


def run_with_output(conn, worker: int, when: float, lines: int, *, finish: bool = True) -> int:
    """One task claimed, given ``lines`` output rows and finished at ``when``."""
    task_submit(conn, "b", [{"command": "echo"}], now=at(when))
    (claim,) = task_claim(conn, worker, 1, now=at(when))
    execution = claim["execution_id"]
    chunks = [(execution, seq, "stdout", f"line {seq}\n") for seq in range(lines)]
    execution_append_output(conn, worker, chunks, now=at(when))
    if finish:
        execution_finish(
            conn, worker, [{"execution_id": execution, "return_code": 0}], now=at(when)
        )
    return execution


def test_retention_drops_old_output_by_partitions_and_records_it(conn):
    day = 86400
    worker = worker_register(conn, "w1", concurrency=5, lease_seconds=100 * day, now=at(0))
    worker = worker["id"]
    # ranges of 2 execution ids instead of the fresh database's 100,000
    for (name,) in conn.execute(
        "SELECT name FROM scitq.partition_bounds('scitq.execution_output')"
    ).fetchall():
        conn.execute(psycopg.sql.SQL("DROP TABLE scitq.{}").format(psycopg.sql.Identifier(name)))
    ctx = context(conn, 0, output_partition_executions=2, partitions_ahead=2)
    assert duties.maintain_partitions(ctx) == 3  # ids 0-5
    old = run_with_output(conn, worker, 0, lines=5)  # 1: range 0-1
    live = run_with_output(conn, worker, 0, lines=3, finish=False)  # 2: old, still running
    recent = run_with_output(conn, worker, 20 * day, lines=4)  # 3
    run_with_output(conn, worker, 0, lines=1)  # 4: range 4-5, keeps 2-3 incomplete

    ctx = context(conn, 40 * day, output_retention_days=30)
    assert duties.apply_retention(ctx) == 2  # the _all leaf of 0-1, then 0-1 itself
    assert (output_rows(conn, old), output_rows(conn, live), output_rows(conn, recent)) == (0, 3, 4)
    dropped = [d for d in decisions(conn, "retention") if d["subject_kind"] == "partition"]
    assert [d["details"]["partition"] for d in dropped] == [
        "execution_output_e0_all", "execution_output_e0"
    ]  # fmt: skip
    assert "output of succeeded attempts kept 30 days" in dropped[0]["reason"]

    assert duties.apply_retention(ctx) == 0  # nothing left to drop, nothing recorded
    assert len(decisions(conn, "retention")) == 2


def test_output_is_kept_unless_retention_is_configured(conn):
    worker = worker_register(conn, "w1", lease_seconds=3600, now=at(0))["id"]
    old = run_with_output(conn, worker, 0, lines=2)
    ctx = context(conn, 1000 * 86400)  # the defaults: output kept, decisions 30 days
    duties.apply_retention(ctx)
    assert output_rows(conn, old) == 2


def test_retention_deletes_old_decisions(conn):
    scheduler_record(conn, "test", [{"decision": "old"}], now=at(0))
    scheduler_record(conn, "test", [{"decision": "new"}], now=at(29 * 86400))
    assert duties.apply_retention(context(conn, 31 * 86400)) == 1
    assert [d["decision"] for d in decisions(conn, "test")] == ["new"]
    assert decisions(conn, "retention")[0]["details"]["rows"] == 1


def test_enabled_duties_follow_the_settings():
    def names(**settings):
        chosen = schedule.scheduled(dataclasses.replace(SchedulerSettings(), **settings))
        return {duty.name: period for duty, period in chosen}

    assert names(duty_seconds=5) == {
        "expire_leases": 5, "timeouts": 5, "worker_liveness": 5, "retention": 3600, "recruit": 10,
        "partitions": 60,
    }  # fmt: skip
    assert "retention" not in names(decision_retention_days=None)
    assert names(decision_retention_days=None, output_retention_days=7)["retention"] == 3600
    assert names(decision_retention_days=None, event_retention_days=7)["retention"] == 3600


# -- the lock fence and the decision log ------------------------------------------------------


def test_a_duty_does_not_act_without_the_scheduler_lock(conn, db):
    _, claim = claim_one(conn, lease=30)
    with psycopg.connect(db, autocommit=True) as holder:
        # a session that does not hold the lock: the duty must not act
        ctx = context(conn, 31)
        ctx.lock_pid = holder.info.backend_pid
        with pytest.raises(LeadershipLost):
            duties.expire_leases(ctx)
        assert status(conn, "execution", claim["execution_id"]) == "assigned"
        # the same session once it holds the lock: it acts
        assert scheduler_lock_try(holder, SCHEDULER_LOCK)
        assert scheduler_lock_holder(conn, SCHEDULER_LOCK)["pid"] == ctx.lock_pid
        assert duties.expire_leases(ctx) == 1
    assert status(conn, "execution", claim["execution_id"]) == "lost"


@pytest.mark.parametrize("bad", [
    {"subject_kind": "x"},  # no decision
    {"decision": ""},
    {"decision": "x", "subject_id": "12"},
    {"decision": "x", "details": [1]},
    {"decision": "x", "why": "unknown field"},
])  # fmt: skip
def test_invalid_decisions_are_refused(conn, bad):
    with pytest.raises(errors.InvalidArgument):
        scheduler_record(conn, "test", [{"decision": "fine"}, bad])
    assert decisions(conn, "test") == []


def test_readers_see_the_log_through_the_view_only(conn, make_role):
    scheduler_record(conn, "test", [{"decision": "seen", "subject_kind": "worker",
                                             "subject_id": 3, "details": {"a": 1}}])  # fmt: skip
    _, reader_dsn = make_role("scitq_reader")
    _, agent_dsn = make_role("scitq_agent")
    with psycopg.connect(reader_dsn, autocommit=True) as reader:
        row = reader.execute(
            "SELECT decision, subject_kind, subject_id, details FROM scitq.scheduler_log"
        ).fetchone()
        assert row == ("seen", "worker", 3, {"a": 1})
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("SELECT * FROM scitq.scheduler_decision")
    with psycopg.connect(agent_dsn, autocommit=True) as agent:
        with pytest.raises(errors.PermissionDenied):
            scheduler_record(agent, "test", [{"decision": "forged"}])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            agent.execute("SELECT * FROM scitq.scheduler_log")
