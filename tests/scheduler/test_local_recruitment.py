"""Recruitment for real: a scheduler process recruits local agents (real processes) for a
batch, they run its tasks, and they are destroyed once idle, leaving no process behind."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from psycopg.rows import dict_row

from scitq.db.recruitment import cloud_operation_list, instance_list, recruiter_set
from scitq.db.task import task_submit
from tests.fixtures.agents import wait_for


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def write_config(tmp_path: Path, max_agents: int = 3) -> Path:
    state_dir = tmp_path / "local-agents"
    config = tmp_path / "scitq.toml"
    config.write_text(
        "[scheduler]\n"
        "recruit_seconds = 0.5\n"
        "idle_grace_seconds = 2\n"
        "[scheduler.local]\n"
        f"state_dir = {json.dumps(str(state_dir))}\n"
        f"max_agents = {max_agents}\n"
        'agent_options = ["--poll-max", "0.5", "--heartbeat", "0.5"]\n'
        "stop_grace_seconds = 10\n"
    )
    return config


@pytest.mark.slow
def test_local_agents_grow_to_three_then_back_to_zero(conn, start_scheduler, tmp_path, monkeypatch):
    monkeypatch.setenv("SCITQ_CONFIG", str(write_config(tmp_path)))
    recruiter = recruiter_set(conn, "work", "local", 3, concurrency=2, tasks_per_worker=20)
    task_submit(conn, "work", [{"command": "sleep 0.3"} for _ in range(60)])
    scheduler = start_scheduler()

    # 0 -> 3 agents, real processes registered as workers of the batch
    wait_for(lambda: len([i for i in instance_list(conn) if i["status"] == "active"]) == 3,
             timeout=90)  # fmt: skip
    instances = instance_list(conn)
    assert len(instances) == 3
    pids = [int(i["provider_ref"]) for i in instances]
    assert all(alive(pid) for pid in pids)
    assert all(os.getpgid(pid) == pid for pid in pids)  # each in its own process group
    workers = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "SELECT name, batches, concurrency, is_permanent, recruiter_id FROM scitq.worker "
            "ORDER BY name"
        )
        .fetchall()
    )
    assert [w["name"] for w in workers] == sorted(i["name"] for i in instances)
    assert {(tuple(w["batches"]), w["concurrency"], w["is_permanent"], w["recruiter_id"])
            for w in workers} == {(("work",), 2, False, recruiter["id"])}  # fmt: skip

    # they run the batch
    def counts():
        return dict(conn.execute(
            "SELECT status, count(*) FROM scitq.task GROUP BY status"
        ).fetchall())  # fmt: skip

    wait_for(lambda: counts() == {"succeeded": 60}, timeout=120)
    served = conn.execute("SELECT count(DISTINCT worker_name) FROM scitq.execution").fetchone()[0]
    assert served >= 2

    # idle -> destroyed: no instance, no worker row, no process, no pid file left
    wait_for(lambda: instance_list(conn) == [], timeout=60)
    assert not any(alive(pid) for pid in pids)
    assert list((tmp_path / "local-agents").glob("*.pid")) == []
    assert conn.execute("SELECT count(*) FROM scitq.worker").fetchone()[0] == 0
    operations = cloud_operation_list(conn, include_old=True)
    assert sorted((o["kind"], o["status"]) for o in operations) == (
        [("deploy", "succeeded")] * 3 + [("destroy", "succeeded")] * 3
    )
    reasons = [
        row[0]
        for row in conn.execute(
            "SELECT reason FROM scitq.scheduler_log WHERE duty = 'recruit' ORDER BY id"
        ).fetchall()
    ]
    assert any("deploying 3 instances on local" in reason for reason in reasons)
    assert sum("idle for" in reason for reason in reasons) == 3
    scheduler.signal(signal.SIGTERM)
    assert scheduler.process.wait(timeout=30) == 0


@pytest.mark.slow
def test_local_quota_and_unknown_flavor_give_clear_failed_operations(
    conn, start_scheduler, tmp_path, monkeypatch
):
    monkeypatch.setenv("SCITQ_CONFIG", str(write_config(tmp_path, max_agents=1)))
    recruiter_set(conn, "typo", "local", 2, flavor="xlarge")
    task_submit(conn, "typo", [{"command": "true"}])
    start_scheduler()
    wait_for(lambda: [o["status"] for o in cloud_operation_list(conn)] == ["failed"],
             timeout=60)  # fmt: skip
    (operation,) = cloud_operation_list(conn)
    assert operation["error_class"] == "config"
    assert operation["error"] == "unknown flavor 'xlarge' for provider local: it only has 'local'"
    assert [i["status"] for i in instance_list(conn)] == ["error"]
    assert list((tmp_path / "local-agents").glob("*.pid")) == []
