"""scitq behind PgBouncer in transaction pooling, as docs/reliability.md recommends for
thousands of agents: Debian's ``pgbouncer`` in front of a private embedded server, with
SCRAM logins (one role per real agent, a shared agent role, the admin).

* 200 simulated poll-only agents (one process, one connection each, doing what an idle
  agent does: register, heartbeat, claim that finds nothing; bench/scale.py's) share the
  pool with real ``scitq agent`` processes running real tasks, each logged in as its own
  worker role: every task succeeds once, on a few server connections.
* What breaks under transaction pooling and is handled: psycopg's prepared statements
  (the `scitq.Client` repeats its queries), LISTEN (an agent left with LISTEN on turns it
  off itself), the scheduler's session advisory lock (refused with one line).

With ``CI=true`` a missing pgbouncer fails the suite (`.ci/apt-packages.txt` has it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.scale_agents import idle_agents
from scitq import Client
from scitq.db import migrate
from scitq.db.pooler import behind_pooler
from scitq.db.task import task_submit
from scitq.db.web_user import web_user_set
from scitq.db.worker import password_verifier, worker_create_role
from scitq.embedded.server import EmbeddedServer
from scitq.web import db as web_db
from scitq.web.auth import hash_password
from tests.cli.conftest import PROJECT_ROOT
from tests.fixtures import unavailable
from tests.fixtures.servers import free_port
from tests.web.conftest import PASSWORD, log_in, make_app

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
POOL_SIZE = 3  # server connections per (database, role) pool
IDLE_AGENTS = 200
REAL_AGENTS = 3
TASKS = 120

pytestmark = [
    pytest.mark.slow,
    pytest.mark.sql,
    pytest.mark.skipif(
        bool(os.environ.get("SCITQ_TEST_DATABASE_URL")),
        reason="uses a private embedded server listening on TCP",
    ),
]


@dataclass
class Bouncer:
    """A transaction-pooling PgBouncer in front of a migrated database."""

    direct: str  # superuser, straight to the server
    port: int
    passwords: dict[str, str]  # role -> password, as PgBouncer's auth_file has them

    def url(self, role: str) -> str:
        return (f"host=127.0.0.1 port={self.port} dbname=scitq user={role} "
                f"password={self.passwords[role]}")  # fmt: skip


def _make_role(conn: psycopg.Connection[object], role: str, group: str, password: str) -> None:
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
        sql.Identifier(role), sql.Literal(password_verifier(conn, role, password)),
        sql.Identifier(group)))  # fmt: skip


@pytest.fixture(scope="module")
def bouncer() -> Iterator[Bouncer]:
    """One server and PgBouncer for the module (the tests use batches of their own)."""
    if not Path(PGBOUNCER).exists():
        unavailable("pgbouncer is not installed (Debian's package, in .ci/apt-packages.txt)")
    data_dir = Path(tempfile.mkdtemp(prefix="scitq-bouncer-", dir="/tmp"))
    data_dir.chmod(0o755)
    server = EmbeddedServer(data_dir)
    # pgbouncer runs as nobody when we are root: pytest's tmp_path is out of its reach
    work = Path(tempfile.mkdtemp(prefix="scitq-pgbouncer-", dir="/tmp"))
    work.chmod(0o777)
    process: subprocess.Popen[bytes] | None = None
    try:
        passwords = {"postgres": uuid.uuid4().hex, "idle_agents": uuid.uuid4().hex}
        upstream = free_port()
        server.serve("127.0.0.1", upstream, passwords["postgres"])
        direct = make_conninfo(server.ensure_running())
        migrate.upgrade(direct)
        with psycopg.connect(direct, autocommit=True) as conn:
            # the simulated agents share a plain member of scitq_agent (any worker name);
            # the real ones log in as roles bound to their worker and batch
            _make_role(conn, "idle_agents", "scitq_agent", passwords["idle_agents"])
            for index in range(REAL_AGENTS):
                role, password = f"pooled_{index}", uuid.uuid4().hex
                worker_create_role(conn, f"pooled-{index}", role,
                                   password_verifier(conn, role, password), ["pooled"])  # fmt: skip
                passwords[role] = password
        (work / "users.txt").write_text(
            "".join(f'"{role}" "{password}"\n' for role, password in passwords.items())
        )
        listen = free_port()
        (work / "pgbouncer.ini").write_text(
            f"[databases]\nscitq = host=127.0.0.1 port={upstream} dbname=scitq\n\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {listen}\n"
            f"unix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {work}/users.txt\n"
            f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\n"
            f"max_client_conn = {IDLE_AGENTS + 100}\nlogfile = {work}/log\n"
        )
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        process = subprocess.Popen(
            [PGBOUNCER, *user, str(work / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", listen)) == 0:
                    break
            assert process.poll() is None and time.monotonic() < deadline, "no pgbouncer"
            time.sleep(0.1)
        yield Bouncer(direct, listen, passwords)
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _agent(bouncer: Bouncer, index: int, work: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env |= {"PYTHONPATH": str(PROJECT_ROOT), "SCITQ_DATA_DIR": str(work / "data"),
            "SCITQ_DATABASE_URL": bouncer.url(f"pooled_{index}")}  # fmt: skip
    command = [sys.executable, "-m", "scitq", "-v", "agent", "--drain", "-b", "pooled",
               "-c", "4", "--name", f"pooled-{index}", "--work-dir", str(work / f"w{index}"),
               "--poll-max", "1", *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, text=True)  # fmt: skip


def test_idle_and_real_agents_share_a_transaction_pool(bouncer: Bouncer, tmp_path: Path) -> None:
    with psycopg.connect(bouncer.direct, autocommit=True) as conn:
        script = 'echo "task $SCITQ_TASK_ID"; sleep 0.05'
        task_submit(conn, "pooled", [{"command": script, "shell": True}] * TASKS)
    # agent 0 is left with LISTEN on (the default): behind the pooler it must turn it off
    agents = [_agent(bouncer, i, tmp_path, *(["--no-listen"] if i else [])) for i in
              range(REAL_AGENTS)]  # fmt: skip
    try:
        figures = asyncio.run(idle_agents(bouncer.url("idle_agents"), bouncer.direct,
                                          IDLE_AGENTS, 10.0, 1.0, 2.0, prepare=False))  # fmt: skip
        outcomes = [agent.communicate(timeout=120)[1] for agent in agents]
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.communicate()
    assert [agent.returncode for agent in agents] == [0] * REAL_AGENTS, outcomes
    with psycopg.connect(bouncer.direct, autocommit=True) as conn:
        statuses = conn.execute(
            "SELECT t.status, e.status, count(*) FROM scitq.task t "
            "JOIN scitq.batch b ON b.id = t.batch_id AND b.name = 'pooled' "
            "JOIN scitq.execution e ON e.task_id = t.id GROUP BY 1, 2"
        ).fetchall()
        assert statuses == [("succeeded", "succeeded", TASKS)]
        output = conn.execute(
            "SELECT count(*) FROM (SELECT e.task_id, string_agg(o.text, '' ORDER BY o.seq) t "
            "FROM scitq.execution e JOIN scitq.execution_output o ON o.execution_id = e.id "
            "WHERE o.stream = 'stdout' GROUP BY e.task_id) s "
            "WHERE t = 'task ' || task_id || E'\\n'"
        ).fetchone()
        assert output == (TASKS,)
        workers = conn.execute(
            "SELECT count(*) FILTER (WHERE last_heartbeat_at IS NOT NULL), count(*) "
            "FROM scitq.worker WHERE name LIKE 'idle-%'"
        ).fetchone()
        assert workers == (IDLE_AGENTS, IDLE_AGENTS)
        # the idle agents' claims found nothing (their batch has no task)
        assert conn.execute("SELECT count(*) FROM scitq.execution "
                            "WHERE worker_name LIKE 'idle-%'").fetchone() == (0,)  # fmt: skip
    # 200 agents and 3 more on a few server connections: one pool per role
    assert figures["polled"] == IDLE_AGENTS  # each claimed (finding nothing) and heartbeat
    assert figures["backends"] <= POOL_SIZE * (1 + REAL_AGENTS) + 2, figures
    assert "behind a connection pooler: no LISTEN" in outcomes[0], outcomes[0][-2000:]


def test_a_client_repeats_its_queries_through_transaction_pooling(bouncer: Bouncer) -> None:
    """psycopg prepares a query run five times on a connection; behind transaction pooling
    the next run may land on a server connection without it. The Client turns preparing
    off behind a pooler."""
    with psycopg.connect(bouncer.direct, autocommit=True) as conn:
        task_submit(conn, "repeated", [{"command": "true"}] * 3)
        assert not behind_pooler(conn)
    with Client(bouncer.url("postgres")) as client:
        assert client.connection.prepare_threshold is None
        for round_ in range(12):
            held = _moving(bouncer, round_)
            assert client.progress("repeated").total == 3
            for other in held:
                other.close()
    with psycopg.connect(bouncer.url("postgres"), autocommit=True) as pooled:
        assert behind_pooler(pooled)


def _moving(bouncer: Bouncer, round_: int) -> list[psycopg.Connection[object]]:
    """Other clients holding server connections in open transactions, a different number
    each round, so that the next runs of a client move between server connections."""
    held = [psycopg.connect(bouncer.url("postgres")) for _ in range(round_ % POOL_SIZE)]
    for other in held:
        other.execute("SELECT 1")
    return held


def test_the_dashboard_repeats_its_queries_through_transaction_pooling(bouncer: Bouncer) -> None:
    with psycopg.connect(bouncer.direct, autocommit=True) as conn:
        web_user_set(conn, "pooled-admin", hash_password(PASSWORD), "admin")
    app = make_app(bouncer.url("postgres"))
    try:
        client = log_in(app.test_client(), "pooled-admin")
        for round_ in range(12):
            held = _moving(bouncer, round_)
            assert client.get("/").status_code == 200
            assert client.get("/tasks/").status_code == 200
            for other in held:
                other.close()
        with app.app_context():  # the pool's connections prepare nothing behind the pooler
            assert web_db.get_conn().prepare_threshold is None
    finally:
        web_db.close(app)


def test_the_scheduler_refuses_a_pooled_connection(bouncer: Bouncer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env["SCITQ_DATABASE_URL"] = bouncer.url("postgres")
    result = subprocess.run([sys.executable, "-m", "scitq", "scheduler"], capture_output=True,
                            text=True, timeout=60, env=env)  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "connection pooler" in lines[0], result.stderr
    # the lock was never taken: a scheduler on a direct connection can act
    with psycopg.connect(bouncer.direct, autocommit=True) as conn:
        locks = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert locks.fetchone() == (0,)


def test_client_wait_ends_through_transaction_pooling(bouncer: Bouncer) -> None:
    """PgBouncer accepts the wait's LISTEN but delivers no notification: the fallback
    poll ends the wait once the tasks are done."""
    from scitq.client import Client
    from scitq.db.execution import execution_finish
    from scitq.db.task import task_claim
    from scitq.db.worker import worker_register

    with psycopg.connect(bouncer.direct, autocommit=True) as conn:
        task_submit(conn, "waited", [{"command": "true"}] * 3)
        worker = worker_register(conn, "w", batches=["waited"], concurrency=3)["id"]
        claims = task_claim(conn, worker, 3)
        results = [{"execution_id": c["execution_id"], "return_code": 0} for c in claims]
        with Client(bouncer.url("postgres")) as client:
            finisher = threading.Timer(0.3, execution_finish, (conn, worker, results))
            finisher.start()
            final = client.wait("waited", timeout=60)
            finisher.join()
    assert (final.succeeded, final.remaining) == (3, 0)
