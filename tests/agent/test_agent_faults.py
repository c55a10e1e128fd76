"""The agent under database faults: a restart of the server loses no output."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from scitq.db import queries, schema
from scitq.db.embedded import EmbeddedServer
from tests.fixtures.agents import wait_for


@pytest.fixture
def own_server():
    """A private embedded server that the test may stop and start."""
    data_dir = Path(tempfile.mkdtemp(prefix="scitq-fault-", dir="/tmp"))
    data_dir.chmod(0o755)
    server = EmbeddedServer(data_dir)
    conninfo = server.ensure_running()
    schema.upgrade(conninfo)
    try:
        yield server, conninfo
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_database_restart_during_a_run_loses_no_output_line(own_server, start_agent):
    server, conninfo = own_server
    script = "for i in $(seq 1 80); do echo line $i; sleep 0.1; done"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        (task,) = queries.task_submit(conn, "outage", [{"command": script, "shell": True}])
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
