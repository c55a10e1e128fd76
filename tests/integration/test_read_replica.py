"""Reporting off the primary: ``[database] read_url`` on a real hot standby.

Read-only commands, `scitq.Client(read_only=True)` and the dashboard's report pages read
from the standby (``pg_is_in_recovery()`` of the connection they use is true), writes
go to the primary, and when the standby does not answer the reads fall back to the
primary, saying so once.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scitq import Client
from scitq.config import DatabaseSettings, Settings, WebSettings
from scitq.db.task import task_submit
from scitq.web import create_app
from scitq.web import db as web_db
from tests.fixtures.replication import ReplicatedPair

# not `sql`: it runs its own clusters, not the server under test (CI's second pass)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _settings(url: str, read_url: str | None) -> Settings:
    return Settings(
        database=DatabaseSettings(url=url, read_url=read_url),
        web=WebSettings(secret_key="s" * 64, threads=2),
    )


def _in_recovery(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    assert row is not None
    return bool(row[0])


def _cli(url: str, read_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCITQ_DATABASE_READ_URL": read_url}
    return subprocess.run(
        [sys.executable, "-m", "scitq", "--database-url", url, *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def test_reads_go_to_the_replica_and_fall_back_to_the_primary(
    replicated_pair: ReplicatedPair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pair = replicated_pair
    primary, standby = pair.primary.conninfo(), pair.standby.conninfo()
    with psycopg.connect(primary, autocommit=True) as conn:
        (task,) = task_submit(conn, "reports", [{"command": "true", "name": "r1"}])
    # synchronous_commit=on waits for the standby's flush, not its replay: wait for it
    with psycopg.connect(standby, autocommit=True) as conn:
        for _ in range(100):
            if conn.execute("SELECT count(*) FROM scitq.task").fetchone() == (1,):
                break
            conn.execute("SELECT pg_sleep(0.05)")

    # the Python API: read_only reads from the standby, the default from the primary
    with Client(settings=_settings(primary, standby), read_only=True) as client:
        assert _in_recovery(client.connection)
        assert [t.name for t in client.page(batch="reports")] == ["r1"]
    with Client(settings=_settings(primary, standby)) as client:
        assert not _in_recovery(client.connection)

    # the CLI: a read-only command needs only the replica (the primary given is a socket
    # directory where nothing listens); a write goes to that primary and fails
    nowhere = f"host={tmp_path} port=5999 user=postgres dbname=scitq"
    listed = _cli(nowhere, standby, "task", "list", "--batch", "reports", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)] == ["r1"]
    shown = _cli(nowhere, standby, "batch", "show", "reports", "--json")
    assert shown.returncode == 0, shown.stderr
    canceled = _cli(nowhere, standby, "task", "cancel", str(task["id"]))
    assert canceled.returncode == 3, canceled.stderr
    assert "cannot reach the database" in canceled.stderr

    # the dashboard's report pages read from the standby, its actions from the primary
    app = create_app(_settings(primary, standby), TESTING=True)
    try:
        with app.app_context():
            assert _in_recovery(web_db.get_report_conn())
            assert not _in_recovery(web_db.get_conn())
    finally:
        web_db.close(app)

    # the standby goes down: reads fall back to the primary, said once
    pair.standby.stop()
    caplog.set_level(logging.WARNING)
    with Client(settings=_settings(primary, standby), read_only=True) as client:
        assert not _in_recovery(client.connection)
        assert [t.name for t in client.page(batch="reports")] == ["r1"]
    with Client(settings=_settings(primary, standby), read_only=True) as client:
        assert not _in_recovery(client.connection)
    fallbacks = [r for r in caplog.records if getattr(r, "action", None) == "replica_fallback"]
    assert len(fallbacks) == 1
    assert "read replica" in fallbacks[0].getMessage()
    listed = _cli(pair.primary.conninfo(), standby, "task", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "read replica is unreachable" in listed.stderr
    assert listed.stderr.count("read replica") == 1

    app = create_app(_settings(primary, standby), TESTING=True)
    caplog.clear()
    try:
        with app.app_context():
            assert not _in_recovery(web_db.get_report_conn())
        with app.app_context():  # the next request does not wait for the replica again
            assert not _in_recovery(web_db.get_report_conn())
    finally:
        web_db.close(app)
    fallbacks = [r for r in caplog.records if getattr(r, "action", None) == "replica_fallback"]
    assert len(fallbacks) == 1
