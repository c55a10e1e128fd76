"""Editing a running task with a real agent: its attempt is killed (the agent learns it
at its next heartbeat, and its late report is refused), the task runs again with the new
command; a rerun of a succeeded task makes a new attempt and keeps the old one."""

from __future__ import annotations

import pytest

from scitq.db.task import task_rerun, task_submit, task_update
from tests.fixtures.agents import wait_for

pytestmark = pytest.mark.slow


def _attempts(conn, task_id):
    return conn.execute(
        "SELECT e.attempt, e.status, e.failure_reason, o.text FROM scitq.execution e"
        " LEFT JOIN LATERAL (SELECT string_agg(x.text, '' ORDER BY x.seq) AS text"
        " FROM scitq.execution_output x WHERE x.execution_id = e.id AND x.stream = 'stdout') o"
        " ON true WHERE e.task_id = %s ORDER BY e.attempt",
        (task_id,),
    ).fetchall()


def _status(conn, task_id):
    return conn.execute("SELECT status FROM scitq.task WHERE id = %s", (task_id,)).fetchone()[0]


def test_an_edit_kills_the_running_attempt_and_a_rerun_keeps_history(conn, start_agent):
    (row,) = task_submit(conn, "edit", [{"command": "sleep 120", "retries": 0}])
    task = row["id"]
    agent = start_agent("-b", "edit", "-c", "1", env={"SCITQ_HEARTBEAT_SECONDS": "0.5"})
    wait_for(lambda: _status(conn, task) == "running", timeout=30)
    (updated,) = task_update(conn, [task], {"command": "echo fixed"}, by="tester")
    assert updated["rerun"] is True
    wait_for(lambda: _status(conn, task) == "succeeded", timeout=60)
    first, second = _attempts(conn, task)
    assert first[:3] == (1, "canceled", "task updated by tester")
    assert second[1] == "succeeded" and second[3] == "fixed\n"
    assert "no longer ours: killing it" in agent.log()

    # a rerun of the succeeded task: a third attempt, the first two kept
    assert [r["status"] for r in task_rerun(conn, [task])] == ["pending"]
    wait_for(lambda: len(_attempts(conn, task)) == 3 and _status(conn, task) == "succeeded",
             timeout=60)  # fmt: skip
    assert [a[:2] for a in _attempts(conn, task)] == [
        (1, "canceled"), (2, "succeeded"), (3, "succeeded")
    ]  # fmt: skip
