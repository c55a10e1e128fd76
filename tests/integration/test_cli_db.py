"""`scitq db ...` through click's runner (and as a process where process behaviour matters)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from scitq import __version__
from scitq.cli import mask_conninfo, one_line, scitq
from scitq.cli.db import ROLE_NAME, default_agent_role, serve_password
from scitq.db import migrate
from scitq.db.task import task_submit
from scitq.db.worker import worker_register
from scitq.embedded.server import EmbeddedServer
from scitq.errors import InvalidArgument, WorkerNotOwned

pytestmark = pytest.mark.sql

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql://scitq@127.0.0.1:1/scitq?connect_timeout=5"

Invoke = Callable[..., Result]


@pytest.fixture
def invoke() -> Invoke:
    """Run ``scitq [--database-url URL] ARGS...`` in-process."""

    def run(url: str | None, *args: str, **kwargs: Any) -> Result:
        prefix = [] if url is None else ["--database-url", url]
        return CliRunner().invoke(scitq, [*prefix, *args], **kwargs)

    return run


@pytest.fixture
def dropped_roles(server_conninfo: str, db: str) -> Iterator[list[str]]:
    """Names of roles a test creates; dropped afterwards (roles are cluster-wide)."""
    roles: list[str] = []
    yield roles
    with psycopg.connect(server_conninfo, autocommit=True) as admin:
        for role in roles:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _assert_one_line_error(result: Result, exit_code: int, fragment: str) -> None:
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("scitq: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.output


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether a PostgreSQL SCRAM-SHA-256 verifier was made from ``password`` (RFC 5802)."""
    method, _, rest = verifier.partition("$")
    assert method == "SCRAM-SHA-256"
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = base64.b64decode(keys.split(":")[0])
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key)


def _stored_verifier(conn: psycopg.Connection[Any], role: str) -> str:
    row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    assert row is not None, f"role {role} does not exist"
    return str(row[0])


# -- upgrade and status -------------------------------------------------------------------


def test_upgrade_empty_database_then_status_shows_head_and_counts(
    invoke: Invoke, empty_db: str
) -> None:
    head = migrate.head_revision()
    before = invoke(empty_db, "db", "status", "--json")
    assert before.exit_code == 0, before.output
    assert json.loads(before.stdout)["migration"] == {
        "current": None,
        "head": head,
        "up_to_date": False,
    }

    upgraded = invoke(empty_db, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert f"from empty to {head}" in upgraded.stdout
    assert migrate.current_revision(empty_db) == head

    status = invoke(empty_db, "db", "status")
    assert status.exit_code == 0, status.output
    assert f"{head} (head)" in status.stdout
    assert "batches 0, tasks 0, executions 0, workers 0" in status.stdout

    again = invoke(empty_db, "db", "upgrade")
    assert again.exit_code == 0
    assert f"already at revision {head}" in again.stdout


def test_status_json_counts_rows(invoke: Invoke, db: str, conn: psycopg.Connection[Any]) -> None:
    task_submit(conn, "b1", [{"name": "t1", "command": "true"}, {"command": "true"}])
    worker_register(conn, "w1")

    result = invoke(db, "db", "status", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"] == {"batches": 1, "tasks": 2, "executions": 0, "workers": 1}
    assert report["migration"]["up_to_date"] is True
    assert report["server"] == {"embedded": False, "url": mask_conninfo(db)}
    expected = conn.info.server_version
    assert report["postgresql_version"] == f"{expected // 10000}.{expected % 10000}"


def test_status_masks_the_password(invoke: Invoke, db: str, make_role: Any) -> None:
    role, conninfo = make_role("scitq_admin", password="hidden-pass-123")
    params = conninfo_to_dict(conninfo)
    uri = (
        f"postgresql://{role}:hidden-pass-123@/{params['dbname']}"
        f"?host={quote(str(params['host']), safe='')}&port={params.get('port', 5432)}"
    )
    for url in (conninfo, uri):
        result = invoke(url, "db", "status", "--json")
        assert result.exit_code == 0, result.output
        assert "hidden-pass-123" not in result.output
        report = json.loads(result.stdout)
        assert "***" in report["server"]["url"]
        assert report["counts"] == {"batches": 0, "tasks": 0, "executions": 0, "workers": 0}


def test_status_as_reader_reports_what_it_cannot_see(
    invoke: Invoke, db: str, make_role: Any
) -> None:
    _role, conninfo = make_role("scitq_reader")

    result = invoke(conninfo, "db", "status", "--json")

    assert result.exit_code == 0, result.output
    migration = json.loads(result.stdout)["migration"]
    assert migration["current"] is None
    assert "permission denied" in migration["error"]


def test_database_url_from_environment_and_flag_precedence(invoke: Invoke, db: str) -> None:
    from_env = invoke(None, "db", "status", "--json", env={"SCITQ_DATABASE_URL": db})
    assert from_env.exit_code == 0, from_env.output
    assert json.loads(from_env.stdout)["server"]["embedded"] is False

    flag_wins = invoke(db, "db", "status", "--json", env={"SCITQ_DATABASE_URL": UNREACHABLE})
    assert flag_wins.exit_code == 0, flag_wins.output
    assert json.loads(flag_wins.stdout)["server"]["url"] == mask_conninfo(db)


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["db", "status"], ["db", "upgrade"]])
def test_unreachable_database_is_one_line_with_exit_code_3(
    invoke: Invoke, command: list[str]
) -> None:
    result = invoke(UNREACHABLE, *command)
    _assert_one_line_error(result, 3, "cannot reach the database")


def test_verbose_adds_the_details_after_the_one_line(invoke: Invoke) -> None:
    result = invoke(None, "--verbose", "--database-url", UNREACHABLE, "db", "status")
    assert result.exit_code == 3
    first, *details = result.stderr.splitlines()
    assert first.startswith("scitq: error: cannot reach the database")
    assert details
    assert "Traceback" not in result.stderr


def test_unreachable_database_as_a_process() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    completed = subprocess.run(
        [sys.executable, "-m", "scitq", "--database-url", UNREACHABLE, "db", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert completed.returncode == 3
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("scitq: error: cannot reach the database")


def test_missing_config_file_is_a_config_error_but_help_still_works(invoke: Invoke) -> None:
    env = {"SCITQ_CONFIG": "/nonexistent/scitq.toml"}
    _assert_one_line_error(invoke(None, "db", "status", env=env), 2, "/nonexistent/scitq.toml")
    helped = invoke(None, "db", "status", "--help", env=env)
    assert helped.exit_code == 0
    assert "Usage:" in helped.stdout


@pytest.mark.parametrize("command", ["serve", "stop"])
def test_serve_and_stop_refuse_a_non_embedded_database(
    invoke: Invoke, db: str, command: str
) -> None:
    # no input is given: the check must come before the password prompt
    result = invoke(db, "db", command)
    _assert_one_line_error(result, 2, f"`scitq db {command}` works on the embedded server only")


def test_version() -> None:
    result = CliRunner().invoke(scitq, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"scitq {__version__}"


def test_one_line_joins_short_messages_and_cuts_long_ones() -> None:
    assert one_line("connection failed\n\tIs the server running?") == (
        "connection failed Is the server running?"
    )
    assert one_line("pg_ctl failed:\nline 2\nline 3\nline 4") == (
        "pg_ctl failed (run with --verbose for details)"
    )
    assert one_line("") == "unknown error"


# -- create-role --------------------------------------------------------------------------


def test_create_role_agent_logs_in_owns_its_worker_and_reads_no_table(
    invoke: Invoke, db: str, conn: psycopg.Connection[Any], dropped_roles: list[str]
) -> None:
    result = invoke(db, "db", "create-role", "--agent", "Node 1/x", "--json")

    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    role, password = created["role"], created["password"]
    dropped_roles.append(role)
    assert role == "scitq_worker_node_1_x"
    assert created["member_of"] == "scitq_agent"
    assert len(password) >= 32
    assert _scram_matches(_stored_verifier(conn, role), password)
    assert not _scram_matches(_stored_verifier(conn, role), password + "x")
    url = conninfo_to_dict(created["database_url"])
    assert (url["user"], url["password"], url["dbname"]) == (role, password, conn.info.dbname)

    worker = conn.execute(
        "SELECT id, name, login_role, status FROM scitq.worker WHERE id = %s",
        (created["worker"]["id"],),
    ).fetchone()
    assert worker == (created["worker"]["id"], "Node 1/x", role, "stopped")

    with psycopg.connect(make_conninfo(db, user=role, password=password)) as agent:
        assert agent.execute("SELECT session_user").fetchone() == (role,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            agent.execute("SELECT * FROM scitq.task")
    with psycopg.connect(make_conninfo(db, user=role, password=password), autocommit=True) as agent:
        assert worker_register(agent, "Node 1/x")["id"] == created["worker"]["id"]
    with pytest.raises(WorkerNotOwned):  # nobody else may resume that worker
        worker_register(conn, "Node 1/x")


def test_create_role_agent_text_output_shows_password_and_url(
    invoke: Invoke, db: str, conn: psycopg.Connection[Any], dropped_roles: list[str]
) -> None:
    role = f"scitq_t_{uuid.uuid4().hex[:10]}"
    dropped_roles.append(role)

    result = invoke(db, "db", "create-role", "--agent", "w-text", "--role", role)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    password = next(line for line in lines if line.startswith("password")).split(": ", 1)[1]
    url_line = next(line for line in lines if "SCITQ_DATABASE_URL=" in line)
    url = conninfo_to_dict(url_line.split("=", 1)[1].strip("'"))
    assert (url["user"], url["password"]) == (role, password)
    assert _scram_matches(_stored_verifier(conn, role), password)


@pytest.mark.parametrize("kind", ["reader", "admin"])
def test_create_role_reader_and_admin(
    invoke: Invoke,
    db: str,
    conn: psycopg.Connection[Any],
    dropped_roles: list[str],
    tmp_path: Path,
    kind: str,
) -> None:
    role = f"scitq_t_{uuid.uuid4().hex[:10]}"
    dropped_roles.append(role)
    password_file = tmp_path / "password"
    password_file.write_text("from a file: spaces & symbols\nsecond line ignored\n")

    options = [f"--{kind}", role, "--password-file", str(password_file), "--json"]
    result = invoke(db, "db", "create-role", *options)

    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["password"] == "from a file: spaces & symbols"
    assert created["member_of"] == f"scitq_{kind}"
    assert _scram_matches(_stored_verifier(conn, role), created["password"])
    member = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (role, f"scitq_{kind}"))
    assert member.fetchone() == (True,)
    with psycopg.connect(make_conninfo(db, user=role, password=created["password"])) as login:
        assert login.execute("SELECT count(*) FROM scitq.batch_progress").fetchone() == (0,)
        if kind == "admin":
            assert login.execute("SELECT count(*) FROM scitq.task").fetchone() == (0,)
        else:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                login.execute("SELECT * FROM scitq.task")

    again = invoke(db, "db", "create-role", f"--{kind}", role)
    _assert_one_line_error(again, 2, "exists already")


def test_create_role_invalid_role_name_is_one_line_and_creates_nothing(
    invoke: Invoke, db: str, conn: psycopg.Connection[Any]
) -> None:
    result = invoke(db, "db", "create-role", "--agent", "w1", "--role", "Bad Role!")

    _assert_one_line_error(result, 2, "invalid role name")
    assert result.stdout == ""
    assert conn.execute("SELECT count(*) FROM scitq.worker").fetchone() == (0,)

    admin = invoke(db, "db", "create-role", "--admin", "Bad Admin")
    _assert_one_line_error(admin, 2, "invalid role name")
    exists = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'Bad Admin'")
    assert exists.fetchone() == (0,)


def test_create_role_needs_exactly_one_kind(invoke: Invoke, db: str) -> None:
    both = invoke(db, "db", "create-role", "--agent", "w1", "--admin", "a1")
    assert both.exit_code == 2
    assert "exactly one of --agent, --admin or --reader" in both.stderr
    role_without_agent = invoke(db, "db", "create-role", "--reader", "r1", "--role", "x")
    assert role_without_agent.exit_code == 2
    assert "--role goes with --agent" in role_without_agent.stderr


# -- helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conninfo", "masked"),
    [
        ("postgresql://u:secret@h:5432/d", "postgresql://u:***@h:5432/d"),
        (
            "postgres://u@h/d?password=secret&sslmode=require",
            "postgres://u@h/d?password=***&sslmode=require",
        ),
        ("postgresql://h1,h2/d", "postgresql://h1,h2/d"),
        ("host=h password=secret dbname=d", "host=h password=*** dbname=d"),
        ("host=h dbname=d", "host=h dbname=d"),
        ("", "libpq defaults (PG* environment variables)"),
    ],
)
def test_mask_conninfo(conninfo: str, masked: str) -> None:
    result = mask_conninfo(conninfo)
    assert "secret" not in result
    if conninfo.startswith("host="):  # key=value strings come back in libpq's order
        assert conninfo_to_dict(result) == conninfo_to_dict(masked)
    else:
        assert result == masked


def test_default_agent_role_is_a_valid_role_name() -> None:
    assert default_agent_role("Node 1/x") == "scitq_worker_node_1_x"
    assert default_agent_role("gpu-2.lab") == "scitq_worker_gpu-2.lab"
    long = default_agent_role("É" * 100)
    assert len(long) == 63
    assert ROLE_NAME.match(long)


def test_serve_password_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("from-file\n")
    environ = {"SCITQ_DB_PASSWORD": "from-env"}
    assert serve_password(password_file, environ) == "from-file"
    assert serve_password(None, environ) == "from-env"

    asked: list[dict[str, Any]] = []

    def prompt(text: str, **kwargs: Any) -> str:
        asked.append(kwargs)
        return "typed"

    monkeypatch.setattr("click.prompt", prompt)
    assert serve_password(None, {}) == "typed"
    assert asked == [{"hide_input": True, "confirmation_prompt": True}]
    password_file.write_text("\n")
    with pytest.raises(InvalidArgument, match="empty"):
        serve_password(password_file, environ)


# -- the embedded server, as processes ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _read_until(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """Read the process's stdout until a line contains ``marker`` (the rest stays unread)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in iter(process.stdout.readline, ""):
            lines.put(line)
            if marker in line:
                return
        lines.put("")  # end of output

    threading.Thread(target=pump, daemon=True).start()
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            line = ""
        if not line:
            raise AssertionError(f"{marker!r} not seen; output so far:\n{seen}")
        seen += line
    return seen


@pytest.fixture
def embedded_env() -> Iterator[dict[str, str]]:
    """The environment of `scitq` processes using a private embedded server."""
    base = Path(tempfile.mkdtemp(prefix="scitq-cli-", dir="/tmp"))
    base.chmod(0o755)  # as root the server runs as another user, who must traverse it
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env.update(PYTHONPATH=str(PROJECT_ROOT), SCITQ_DATA_DIR=str(base / "data"))
    try:
        yield env
    finally:
        EmbeddedServer(base / "data").stop()
        shutil.rmtree(base, ignore_errors=True)


def _scitq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scitq", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


def test_embedded_upgrade_status_serve_create_role_and_stop(embedded_env: dict[str, str]) -> None:
    head = migrate.head_revision()
    not_started = json.loads(_scitq(embedded_env, "db", "status", "--json").stdout)
    assert not_started["server"]["embedded"] is True
    assert not_started["server"]["running"] is False

    upgraded = _scitq(embedded_env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"from empty to {head}" in upgraded.stdout
    running = json.loads(_scitq(embedded_env, "db", "status", "--json").stdout)
    assert running["server"]["running"] is True
    assert running["server"]["listen"] is None
    assert running["migration"]["current"] == head

    port = _free_port()
    command = ["db", "serve", "--listen", "127.0.0.1", "--port", str(port)]
    serve = subprocess.Popen(
        [sys.executable, "-m", "scitq", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**embedded_env, "SCITQ_DB_PASSWORD": "serve-secret"},
    )
    try:
        output = _read_until(serve, "press Ctrl-C", timeout=120)
        assert f"postgresql://postgres@127.0.0.1:{port}/scitq" in output
        assert "serve-secret" not in output
        tcp = f"host=127.0.0.1 port={port} dbname=scitq connect_timeout=10"
        with psycopg.connect(f"{tcp} user=postgres password=serve-secret") as superuser:
            assert superuser.execute("SELECT current_user").fetchone() == ("postgres",)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(f"{tcp} user=postgres password=wrong")

        created = _scitq(embedded_env, "db", "create-role", "--agent", "remote-1", "--json")
        assert created.returncode == 0, created.stderr
        agent = json.loads(created.stdout)
        assert f"@127.0.0.1:{port}/scitq?sslmode=verify-full&sslrootcert=/" in agent["database_url"]
        with psycopg.connect(agent["database_url"], connect_timeout=10) as login:
            assert login.execute("SELECT session_user").fetchone() == (agent["role"],)

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=120) == 0
        assert serve.stdout is not None
        assert "stopped serving on TCP (SIGTERM)" in serve.stdout.read()
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"{tcp} user=postgres password=serve-secret")
    after = json.loads(_scitq(embedded_env, "db", "status", "--json").stdout)
    assert after["server"]["running"] is True
    assert after["server"]["listen"] is None
    assert after["counts"]["workers"] == 1

    stopped = _scitq(embedded_env, "db", "stop")
    assert stopped.returncode == 0
    assert "stopped the embedded server" in stopped.stdout
    assert not EmbeddedServer(Path(embedded_env["SCITQ_DATA_DIR"])).is_running()
