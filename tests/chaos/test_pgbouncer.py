"""Agents behind PgBouncer in transaction pooling (poll-only), as docs/reliability.md
recommends for thousands of agents. Needs Debian's ``pgbouncer`` (skipped without it:
CI does not install it; bench/scale.py measures the same set-up)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from scitq.db import migrate
from scitq.db.task import task_submit
from scitq.embedded.server import EmbeddedServer
from tests.cli.conftest import PROJECT_ROOT

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.sql,
    pytest.mark.skipif(not Path(PGBOUNCER).exists(), reason="pgbouncer is not installed"),
    pytest.mark.skipif(
        bool(os.environ.get("SCITQ_TEST_DATABASE_URL")),
        reason="uses a private embedded server listening on TCP",
    ),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def bouncer(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(direct conninfo, PgBouncer conninfo) to a migrated database."""
    data_dir = Path(tempfile.mkdtemp(prefix="scitq-bouncer-", dir="/tmp"))
    data_dir.chmod(0o755)
    server = EmbeddedServer(data_dir)
    password, port = uuid.uuid4().hex, _free_port()
    try:
        server.serve("127.0.0.1", port, password)
        direct = make_conninfo(server.ensure_running())
        migrate.upgrade(direct)
        listen = _free_port()
        # pgbouncer runs as nobody when we are root: pytest's tmp_path is out of its reach
        work = Path(tempfile.mkdtemp(prefix="scitq-pgbouncer-", dir="/tmp"))
        work.chmod(0o777)
        (work / "pgbouncer.ini").write_text(
            f"[databases]\nscitq = host=127.0.0.1 port={port} dbname=scitq user=postgres "
            f"password={password}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
            f"listen_port = {listen}\nunix_socket_dir =\nauth_type = any\n"
            f"pool_mode = transaction\ndefault_pool_size = 3\nlogfile = {work}/log\n"
        )
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        process = subprocess.Popen([PGBOUNCER, *user, str(work / "pgbouncer.ini")])
        try:
            deadline = time.monotonic() + 10
            while True:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", listen)) == 0:
                        break
                assert process.poll() is None and time.monotonic() < deadline, "no pgbouncer"
                time.sleep(0.1)
            yield direct, f"host=127.0.0.1 port={listen} dbname=scitq user=postgres"
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
            shutil.rmtree(work, ignore_errors=True)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_poll_only_agents_work_through_transaction_pooling(
    bouncer: tuple[str, str], tmp_path: Path
) -> None:
    direct, pooled = bouncer
    with psycopg.connect(direct, autocommit=True) as conn:
        task_submit(conn, "pooled", [{"command": f"echo {i}"} for i in range(120)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    agents = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scitq",
                "--database-url",
                pooled,
                "agent",
                "--no-listen",
                "--drain",
                "-b",
                "pooled",
                "-c",
                "4",
                "--name",
                f"pooled-{i}",
                "--work-dir",
                str(tmp_path / f"w{i}"),
                "--poll-max",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for i in range(3)  # more agents than the pool's 3 server connections
    ]
    try:
        outcomes = [agent.communicate(timeout=120) for agent in agents]
    except subprocess.TimeoutExpired:
        for agent in agents:
            agent.kill()
        logs = [agent.communicate()[1][-1500:] for agent in agents]
        with psycopg.connect(direct, autocommit=True) as conn:
            states = conn.execute("SELECT status, count(*) FROM scitq.task GROUP BY 1").fetchall()
        pytest.fail(f"agents did not finish: tasks {states}; logs {logs}")
    assert [agent.returncode for agent in agents] == [0, 0, 0], [e[-500:] for _, e in outcomes]
    with psycopg.connect(direct, autocommit=True) as conn:
        assert conn.execute("SELECT status, count(*) FROM scitq.task GROUP BY 1").fetchall() == [
            ("succeeded", 120)
        ]
        lines = conn.execute("SELECT count(*) FROM scitq.task_log").fetchone()
        assert lines == (120,)
