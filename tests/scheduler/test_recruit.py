"""Recruitment decisions and cloud operations against a real database, with the fake
provider (scitq.scheduler.providers.fake, in-memory machines: no agent runs)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from scitq import errors
from scitq.config import SchedulerSettings
from scitq.db.batch import batch_pause
from scitq.db.recruitment import (
    cloud_operation_list,
    instance_link_workers,
    instance_list,
    instance_request,
    recruiter_delete,
    recruiter_list,
    recruiter_set,
    recruiter_update,
)
from scitq.db.task import task_pause, task_resume, task_submit
from scitq.db.worker import worker_heartbeat, worker_register
from scitq.scheduler.duties import DutyContext, Recruitment
from scitq.scheduler.operations import OperationRunner, agent_conninfo
from scitq.scheduler.providers.base import ProviderError
from scitq.scheduler.providers.fake import FakeProvider
from scitq.scheduler.recruit import backoff_seconds, recruit


def settings(**changes) -> SchedulerSettings:
    base = SchedulerSettings(
        idle_grace_seconds=60, operation_retry_seconds=0.01, deploy_backoff_seconds=600
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def recruitment(db, fake):
    runner = OperationRunner(settings(), {"fake": fake}, db)
    state = Recruitment(runner=runner, quotas={"fake": 5})
    yield state
    runner.shutdown()


def run(conn, recruitment, now: datetime | None = None, **changes) -> int:
    ctx = DutyContext(
        conn=conn, settings=settings(**changes), scheduler="test:1", now=now,
        recruitment=recruitment,
    )  # fmt: skip
    count = recruit(ctx)
    if recruitment.runner is not None:
        assert recruitment.runner.wait_idle(20)
    return count


def rows(conn, query: str, *params) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def submit(conn, batch: str, count: int) -> None:
    task_submit(conn, batch, [{"command": "true"} for _ in range(count)])


def recruiter_log(conn, recruiter_id: int) -> list[dict]:
    return rows(
        conn,
        "SELECT decision, reason, details FROM scitq.scheduler_log "
        "WHERE subject_kind = 'recruiter' AND subject_id = %s ORDER BY id",
        recruiter_id,
    )


def test_recruits_for_runnable_tasks_within_the_maximum(conn, recruitment, fake):
    recruiter = recruiter_set(conn, "b", "fake", 3, flavor="small", tasks_per_worker=10)
    submit(conn, "b", 25)  # 3 workers wanted
    assert run(conn, recruitment) == 3
    instances = instance_list(conn)
    assert [i["status"] for i in instances] == ["building"] * 3
    assert {i["last_operation_status"] for i in instances} == {"succeeded"}
    assert len(fake.instances) == 3
    spec = next(iter(fake.specs.values()))
    assert (spec.batch, spec.flavor, spec.concurrency) == ("b", "small", 1)
    (decision,) = recruiter_log(conn, recruiter["id"])
    assert decision["decision"] == "recruit"
    assert "target 3 workers (25 runnable or running tasks at 10 per worker)" in decision["reason"]
    # the instances starting count: nothing more is asked for
    submit(conn, "b", 100)
    assert run(conn, recruitment) == 0
    assert len(instance_list(conn)) == 3
    last = recruiter_log(conn, recruiter["id"])[-1]
    assert last["decision"] == "hold"
    assert (
        "target 3 workers (125 runnable or running tasks at 10 per worker, at most 3 "
        "workers), 0 serving and 3 starting" in last["reason"]
    )
    # a reason not to act is recorded once
    run(conn, recruitment)
    assert len(recruiter_log(conn, recruiter["id"])) == 2


def test_waiting_tasks_and_paused_batches_recruit_nobody(conn, recruitment):
    recruiter = recruiter_set(conn, "b", "fake", 3)
    (first,) = task_submit(conn, "b", [{"command": "true", "name": "a"}])
    task_pause(conn, [first["id"]])
    task_submit(conn, "b", [{"command": "true", "depends_on_names": ["a"]}])
    assert run(conn, recruitment) == 0  # min_workers 0: waiting tasks want nobody
    task_resume(conn, [first["id"]])
    batch_pause(conn, "b")
    assert run(conn, recruitment) == 0
    reasons = [d["reason"] for d in recruiter_log(conn, recruiter["id"])]
    assert "target 0 workers (its batch is paused)" in reasons[-1]


def test_existing_workers_serving_the_batch_count(conn, recruitment):
    recruiter = recruiter_set(conn, "b", "fake", 5, tasks_per_worker=2)
    submit(conn, "b", 4)  # 2 wanted
    worker_register(conn, "permanent-1", batches=["b"])
    worker_register(conn, "other-batch", batches=["c"])
    assert run(conn, recruitment) == 1
    decision = recruiter_log(conn, recruiter["id"])[-1]
    assert "1 serving and 0 starting" in decision["reason"]


def test_provider_quota_caps_deploys_and_is_explained(conn, recruitment):
    recruitment.quotas["fake"] = 2
    recruiter = recruiter_set(conn, "b", "fake", 10)
    submit(conn, "b", 5)
    assert run(conn, recruitment) == 2
    assert (
        "3 more wanted but provider fake is at its quota of 2"
        in (recruiter_log(conn, recruiter["id"])[-1]["reason"])
    )
    assert run(conn, recruitment) == 0
    assert "is at its quota of 2 instances" in recruiter_log(conn, recruiter["id"])[-1]["reason"]


def test_unknown_provider_is_explained_and_nothing_deployed(conn, recruitment):
    recruiter = recruiter_set(conn, "b", "nowhere", 2)
    submit(conn, "b", 1)
    assert run(conn, recruitment) == 0
    assert instance_list(conn) == []
    reason = recruiter_log(conn, recruiter["id"])[-1]["reason"]
    assert "provider 'nowhere' is not configured on this scheduler" in reason


def test_unknown_flavor_fails_the_deploy_and_backs_off(conn, recruitment):
    recruiter = recruiter_set(conn, "b", "fake", 2, flavor="huge")
    submit(conn, "b", 1)
    assert run(conn, recruitment) == 1
    (operation,) = cloud_operation_list(conn)
    assert operation["status"] == "failed"
    assert operation["error_class"] == "config"
    assert "unknown flavor 'huge' for provider fake" in operation["error"]
    assert "giving up" in operation["log"]
    assert [i["status"] for i in instance_list(conn)] == ["error"]
    # no tight loop: the recruiter waits
    assert run(conn, recruitment) == 0
    reason = recruiter_log(conn, recruiter["id"])[-1]["reason"]
    assert "1 failed deploys in a row, the last one config: unknown flavor" in reason
    # after the back-off it tries again
    later = datetime.now(UTC) + timedelta(seconds=backoff_seconds(settings(), 1) + 5)
    assert run(conn, recruitment, now=later) == 1


def test_transient_failures_are_retried_then_succeed(conn, recruitment, fake):
    fake.fail_next = [ProviderError("connection reset", "transient")]
    recruiter_set(conn, "b", "fake", 1)
    submit(conn, "b", 1)
    run(conn, recruitment)
    (operation,) = cloud_operation_list(conn)
    assert operation["status"] == "pending"  # back-off: not before
    assert operation["error_class"] == "transient"
    assert "retrying in" in operation["log"]
    assert operation["not_before"] is not None
    recruitment.runner.dispatch(conn)  # the retry is not due yet (10 ms back-off)...
    import time

    time.sleep(0.05)
    recruitment.runner.dispatch(conn)
    assert recruitment.runner.wait_idle(20)
    (operation,) = cloud_operation_list(conn)
    assert (operation["status"], operation["attempts"]) == ("succeeded", 2)


def test_quota_errors_give_up_at_once(conn, recruitment, fake):
    fake.fail_next = [ProviderError("Quota exceeded for cores", "quota")]
    recruiter_set(conn, "b", "fake", 1)
    submit(conn, "b", 1)
    run(conn, recruitment)
    (operation,) = cloud_operation_list(conn)
    assert (operation["status"], operation["error_class"], operation["attempts"]) == (
        "failed", "quota", 1,
    )  # fmt: skip


def register_instances(conn) -> list[dict]:
    """Register a worker for each building instance, as its agent would."""
    for instance in instance_list(conn):
        worker_register(conn, instance["name"], batches=[instance["batch"]])
    return instance_link_workers(conn)


def test_idle_instances_are_destroyed_after_the_grace(conn, recruitment, fake):
    recruiter = recruiter_set(conn, "b", "fake", 2, tasks_per_worker=1)
    submit(conn, "b", 2)
    run(conn, recruitment)
    assert instance_link_workers(conn) == []  # no agent registered yet
    for instance in instance_list(conn):  # as their agents do
        worker_register(conn, instance["name"], batches=["b"])
    run(conn, recruitment)  # links them
    active = instance_list(conn)
    assert {i["status"] for i in active} == {"active"}
    activated = rows(conn, "SELECT reason FROM scitq.scheduler_log WHERE decision = 'active'")
    assert len(activated) == 2 and "registered as worker" in activated[0]["reason"]
    worker = rows(conn, "SELECT * FROM scitq.worker WHERE name = %s", active[0]["name"])[0]
    assert worker["is_permanent"] is False
    assert worker["recruiter_id"] == recruiter["id"]
    # still pending tasks: nobody is destroyed, even after the grace
    later = datetime.now(UTC) + timedelta(seconds=600)
    for instance in active:  # heartbeats go on, as agents' do
        worker_heartbeat(conn, instance["worker_id"], now=later)
    run(conn, recruitment, now=later)
    assert {i["status"] for i in instance_list(conn)} == {"active"}
    conn.execute("DELETE FROM scitq.task")
    run(conn, recruitment)  # within the grace
    assert {i["status"] for i in instance_list(conn)} == {"active"}
    run(conn, recruitment, now=later)
    assert instance_list(conn) == []  # deleted
    assert len(fake.deleted) == 2
    assert rows(conn, "SELECT * FROM scitq.worker WHERE name LIKE 'scitq-%%'") == []
    destroyed = rows(conn, "SELECT reason FROM scitq.scheduler_log WHERE decision = 'destroy'")
    assert len(destroyed) == 2
    assert "idle for" in destroyed[0]["reason"]


def test_min_workers_stay_while_the_batch_has_work(conn, recruitment):
    recruiter_set(conn, "b", "fake", 3, min_workers=1, tasks_per_worker=1)
    (first,) = task_submit(conn, "b", [{"command": "true", "name": "a"}])
    task_submit(conn, "b", [{"command": "true", "depends_on_names": ["a"]}])
    run(conn, recruitment)
    assert len(instance_list(conn)) == 1
    register_instances(conn)
    task_pause(conn, [first["id"]])  # runnable work gone, a waiting task remains
    later = datetime.now(UTC) + timedelta(seconds=600)
    (instance,) = instance_list(conn)
    worker_heartbeat(conn, instance["worker_id"], now=later)
    run(conn, recruitment, now=later)
    assert [i["status"] for i in instance_list(conn)] == ["active"]


def test_permanent_and_deployed_workers(conn, recruitment, fake):
    instance_request(conn, "fake", "b", 2, concurrency=4, prefetch=1)
    instance_request(conn, "fake", "b", 1, is_permanent=True)
    run(conn, recruitment)
    assert len(fake.instances) == 3
    assert {s.concurrency for s in fake.specs.values()} == {4, 1}
    register_instances(conn)
    later = datetime.now(UTC) + timedelta(seconds=600)
    for instance in instance_list(conn):
        worker_heartbeat(conn, instance["worker_id"], now=later)
    run(conn, recruitment, now=later)
    (kept,) = instance_list(conn)
    assert kept["is_permanent"] is True


def test_idle_workers_of_a_finished_batch_are_reused(conn, recruitment, fake):
    recruiter_set(conn, "first", "fake", 1)
    submit(conn, "first", 1)
    run(conn, recruitment)
    register_instances(conn)
    conn.execute("DELETE FROM scitq.task")  # the first batch is done
    second = recruiter_set(conn, "second", "fake", 1, concurrency=3)
    submit(conn, "second", 1)
    assert run(conn, recruitment) == 1
    assert len(fake.instances) == 1  # no new machine
    (instance,) = instance_list(conn)
    assert (instance["batch"], instance["concurrency"]) == ("second", 3)
    worker = rows(conn, "SELECT batches, concurrency FROM scitq.worker WHERE id = %s",
                  instance["worker_id"])[0]  # fmt: skip
    assert worker == {"batches": ["second"], "concurrency": 3}
    assert "reusing 1 idle workers" in recruiter_log(conn, second["id"])[-1]["reason"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"max_workers": 0}, "maximum workers must be 1 or more, not 0"),
    ({"min_workers": 5}, "minimum workers (5) must not exceed maximum workers (2)"),
    ({"concurrency": 0}, "concurrency must be 1 or more, not 0"),
    ({"tasks_per_worker": 0}, "tasks per worker must be 1 or more, not 0"),
    ({"provider": "Bad Name"}, "invalid provider name 'Bad Name'"),
])  # fmt: skip
def test_invalid_recruiters_are_refused_with_a_clear_error(conn, fields, message):
    values = {"provider": "fake", "max_workers": 2, **fields}
    provider, max_workers = values.pop("provider"), values.pop("max_workers")
    with pytest.raises(
        errors.InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        recruiter_set(conn, "b", provider, max_workers, **values)
    assert recruiter_list(conn) == []


def test_recruiter_set_is_an_upsert_and_update_keeps_fields(conn):
    first = recruiter_set(conn, "b", "fake", 2, flavor="small")
    again = recruiter_set(conn, "b", "fake", 4, flavor="large")
    assert again["id"] == first["id"] and again["max_workers"] == 4
    updated = recruiter_update(conn, first["id"], concurrency=8, flavor="")
    assert (updated["concurrency"], updated["flavor"], updated["max_workers"]) == (8, None, 4)
    recruiter_delete(conn, first["id"])
    with pytest.raises(errors.NotFound):
        recruiter_delete(conn, first["id"])


def test_agent_conninfo_replaces_the_credentials():
    url = agent_conninfo("postgresql://admin:secret@db.example:5433/scitq", "scitq_worker_x", "pw")
    params = psycopg.conninfo.conninfo_to_dict(url)
    assert (params["user"], params["password"], params["host"], params["port"]) == (
        "scitq_worker_x", "pw", "db.example", "5433",
    )  # fmt: skip


def test_retention_query_uses_the_finished_at_index(conn):
    plan = conn.execute(
        "EXPLAIN SELECT o.execution_id, o.seq FROM scitq.execution e "
        "JOIN scitq.execution_output o ON o.execution_id = e.id "
        "WHERE e.finished_at < now() - interval '30 days' LIMIT 10000"
    ).fetchall()
    conn.execute("SET enable_seqscan = off")
    plan = "\n".join(row[0] for row in conn.execute(
        "EXPLAIN SELECT o.execution_id, o.seq FROM scitq.execution e "
        "JOIN scitq.execution_output o ON o.execution_id = e.id "
        "WHERE e.finished_at < now() - interval '30 days' LIMIT 10000"
    ).fetchall())  # fmt: skip
    assert "execution_finished_at_idx" in plan
