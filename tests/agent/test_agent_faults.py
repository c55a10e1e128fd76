"""The agent under database faults: a restart of the server loses no output."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from scitq.agent.link import PASS_IDLE_LIMIT_MS
from scitq.db import migrate
from scitq.db.execution import execution_expire_leases, pass_idle_limit
from scitq.db.task import task_pause, task_submit
from scitq.embedded.server import EmbeddedServer
from tests.fixtures.agents import wait_for


@pytest.fixture
def own_server():
    """A private embedded server that the test may stop and start."""
    data_dir = Path(tempfile.mkdtemp(prefix="scitq-fault-", dir="/tmp"))
    data_dir.chmod(0o755)
    server = EmbeddedServer(data_dir)
    conninfo = server.ensure_running()
    migrate.upgrade(conninfo)
    try:
        yield server, conninfo
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_database_restart_during_a_run_loses_no_output_line(own_server, start_agent):
    server, conninfo = own_server
    script = "for i in $(seq 1 80); do echo line $i; sleep 0.1; done"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        (task,) = task_submit(conn, "outage", [{"command": script, "shell": True}])
        start_agent("-b", "outage", "--lease", "120", conninfo=conninfo)

        def stored() -> int:
            return conn.execute("SELECT count(*) FROM scitq.execution_output").fetchone()[0]

        wait_for(lambda: stored() >= 2, timeout=30)
    server.stop()
    time.sleep(3)  # the task keeps writing while the database is down
    server.ensure_running()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        wait_for(
            lambda: (
                conn.execute(
                    "SELECT status FROM scitq.task WHERE id = %s", (task["id"],)
                ).fetchone()[0]
                == "succeeded"
            ),
            timeout=60,
        )
        rows = conn.execute("SELECT seq, text FROM scitq.task_log ORDER BY seq").fetchall()
    assert [seq for seq, _ in rows] == list(range(len(rows)))  # no gap, no duplicate
    assert "".join(text for _, text in rows) == "".join(f"line {i}\n" for i in range(1, 81))


def test_frozen_agent_past_its_lease_kills_its_copy_and_is_refused(conn, start_agent, tmp_path):
    import os
    import signal

    import psutil

    pid_file = tmp_path / "pid"
    (task,) = task_submit(
        conn,
        "frozen",
        [{"command": f"echo $$ > {pid_file}; exec sleep 60", "shell": True, "retries": 1,
          "retry_delay_seconds": 0}],
    )  # fmt: skip
    agent = start_agent("-b", "frozen", "--lease", "2", "--heartbeat", "0.5")
    child = psutil.Process(
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() and int(pid_file.read_text()))  # noqa: E501
    )  # fmt: skip
    # frozen once its report of the `running` phase is stored: not in the middle of a
    # pipelined pass, where the server waits for the rest of the pass with the rows
    # locked (no idle limit applies before the pass's Sync: see the session 6 note)
    wait_for(lambda: conn.execute("SELECT status FROM scitq.execution").fetchone() == ("running",))
    os.kill(agent.process.pid, signal.SIGSTOP)  # the agent only: its task keeps running
    # past the lease (2 s), and past PASS_IDLE_LIMIT_MS if the stop caught the agent
    # between the statements of a pass: its transaction is then ended by the server
    expired: list[dict] = []
    wait_for(lambda: bool(expired.extend(execution_expire_leases(conn)) or expired),
             timeout=(PASS_IDLE_LIMIT_MS / 1000) + 15)  # fmt: skip
    assert [row["task_id"] for row in expired] == [task["id"]]
    task_pause(conn, [task["id"]])  # keep the retry for the test to look at
    os.kill(agent.process.pid, signal.SIGCONT)
    # at its next heartbeat the agent learns the execution is lost and kills its copy
    wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, timeout=15)
    assert conn.execute("SELECT status FROM scitq.execution").fetchall() == [("lost",)]
    assert conn.execute("SELECT status FROM scitq.task").fetchone() == ("paused",)
    assert agent.process.poll() is None  # and goes on serving


def test_a_report_pass_stopped_between_statements_does_not_hold_its_locks(db, conn):
    # what a frozen agent leaves: a pass whose transaction took a row lock and whose
    # COMMIT never comes; the server ends it, so that lease expiry (SKIP LOCKED) can act
    (task,) = task_submit(conn, "stalled", [{"command": "true"}])
    with psycopg.connect(db) as stalled:
        pass_idle_limit(stalled, 300)
        stalled.execute("SELECT id FROM scitq.task WHERE id = %s FOR UPDATE", (task["id"],))
        locked = "SELECT id FROM scitq.task WHERE id = %s FOR UPDATE SKIP LOCKED"
        assert conn.execute(locked, (task["id"],)).fetchall() == []  # held, for now
        time.sleep(1.0)
        assert conn.execute(locked, (task["id"],)).fetchall() == [(task["id"],)]
        with pytest.raises(psycopg.Error, match="idle-in-transaction timeout"):
            stalled.execute("SELECT 1")  # its session was ended by the server


def test_a_work_dir_that_cannot_be_made_fails_the_execution_not_the_agent(
    conn, start_agent, tmp_path
):
    task_submit(conn, "disk", [{"command": "true"}, {"command": "true"}])
    name = "diskagent"
    blocker = tmp_path / name / "execution-1"  # the first execution's work dir is a file
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    agent = start_agent("-b", "disk", name=name)
    ended = "SELECT count(*) FROM scitq.task WHERE status IN ('succeeded', 'failed')"
    wait_for(lambda: conn.execute(ended).fetchone()[0] == 2)
    rows = conn.execute(
        "SELECT id, status, failure_reason FROM scitq.execution ORDER BY id"
    ).fetchall()
    assert rows[0][1] == "failed" and "cannot create the work dir" in rows[0][2]
    assert rows[1][1] == "succeeded"
    assert agent.process.poll() is None
