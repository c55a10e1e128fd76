"""Bad input on the command line: every option of ``scitq launch``, ``scitq worker set`` and
``scitq agent`` gets a one-line error naming it, and the database is left as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from scitq.cli import scitq
from scitq.db.task import task_submit
from scitq.db.worker import worker_register
from tests.badinput.snapshot import snapshot
from tests.cli.conftest import PROJECT_ROOT, assert_one_line_error

pytestmark = pytest.mark.sql

HUGE_NUMBER = str(2**63)
INT_OVERFLOW = str(2**31)


def _invoke(db: str, *args: str, input: str | bytes | None = None) -> Any:
    return CliRunner().invoke(scitq, ["--database-url", db, *args], input=input)


def assert_refused(result: Any, fragment: str, exit_codes: tuple[int, ...] = (2,)) -> None:
    """A one-line ``scitq: error:`` naming ``fragment``, or click's usage error naming it."""
    assert result.exit_code in exit_codes, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.stderr.startswith("Usage:"):  # click's own check of an option's type or range
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and fragment in errors[0], result.stderr
    else:
        assert_one_line_error(result, result.exit_code, fragment)


LAUNCH: list[tuple[list[str], str]] = [
    (["--retries", "-1"], "--retries"),
    (["--retries", HUGE_NUMBER], "--retries"),
    (["--retries", "two"], "--retries"),
    (["--retry-delay", "-1"], "--retry-delay"),
    (["--retry-delay", "nan"], "--retry-delay"),
    (["--retry-delay", "inf"], "--retry-delay"),
    (["--download-timeout", "0"], "--download-timeout"),
    (["--run-timeout", "-5"], "--run-timeout"),
    (["--run-timeout", "nan"], "--run-timeout"),
    (["--run-timeout", "1e300"], "--run-timeout"),
    (["--priority", HUGE_NUMBER], "--priority"),
    (["--priority", "1.5"], "--priority"),
    (["--uid", "-1"], "--uid"),
    (["--uid", HUGE_NUMBER], "--uid"),
    (["--gid", "5"], "--gid"),  # --gid without --uid
    (["--env", "NOEQUALS"], "-e 'NOEQUALS'"),
    (["--env", "=value"], "-e '=value'"),
    (["-R", "987654"], "987654"),
    (["-R", "nosuchname"], "depends on a name"),
    (["-R", "-3"], "depends on a name"),
    (["-i", "gopher://host/x"], "-i/--input"),
    (["-i", ""], "-i/--input"),
    (["-o", "s3://b/out/|gunzip"], "-o/--output"),
    (["-r", "s3://"], "-r/--resource"),
    (["--batch", ""], "batch"),
    (["--batch", "a/b"], "batch"),
    (["--batch", "a\nb"], "batch"),
]


@pytest.mark.parametrize(
    ("args", "fragment"), [pytest.param(a, f, id=" ".join(a)) for a, f in LAUNCH]
)
def test_launch_option_refused(
    db: str, conn: psycopg.Connection[Any], args: list[str], fragment: str
) -> None:
    task_submit(conn, "existing", [{"command": "true", "name": "dep"}])
    before = snapshot(conn)
    result = _invoke(db, "launch", *args, "--", "true")
    assert_refused(result, fragment, (2, 4))
    assert snapshot(conn) == before


def test_launch_without_command_or_with_an_empty_one(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    before = snapshot(conn)
    for args in (["launch"], ["launch", "--", ""], ["launch", "--shell", "--", "   "]):
        result = _invoke(db, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "command" in result.stderr.lower(), result.stderr
        assert "Traceback" not in result.output
    assert snapshot(conn) == before


FROM_FILE: list[tuple[str, bytes, str]] = [
    ("not-json", b"{nope\n", "line 1"),
    ("array-line", b'["true"]\n', "line 1"),
    ("no-command", b'{"name": "x"}\n', "command"),
    ("unknown-field", b'{"command": "true", "colour": "red"}\n', "colour"),
    ("negative-retries", b'{"command": "true", "retries": -1}\n', "retries"),
    ("nul-in-command", b'{"command": "echo a\\u0000b"}\n', "command"),
    ("nul-byte-raw", b'{"command": "echo a\x00b"}\n', "line 1"),
    ("invalid-utf8", b'{"command": "echo \xff\xfe"}\n', "UTF-8"),
    ("bad-second-line", b'{"command": "true"}\n{"command": "true", "env": [1]}\n', "line 2"),
    (
        "cycle",
        b'{"command": "a", "name": "a", "depends_on_names": ["b"]}\n'
        b'{"command": "b", "name": "b", "depends_on_names": ["a"]}\n',
        "depends on itself",
    ),
]


@pytest.mark.parametrize(
    ("content", "fragment"), [pytest.param(c, f, id=i) for i, c, f in FROM_FILE]
)
def test_launch_from_file_refused_all_or_nothing(
    db: str, conn: psycopg.Connection[Any], tmp_path: Path, content: bytes, fragment: str
) -> None:
    before = snapshot(conn)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_bytes(b'{"command": "true", "name": "good"}\n' + content)
    result = _invoke(db, "launch", "--from-file", str(tasks))
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scitq: error: "), result.stderr
    if fragment.startswith("line "):  # the good first line shifts the bad one by one
        fragment = f"line {int(fragment.split()[1]) + 1}"
    assert fragment in lines[0], lines[0]
    assert snapshot(conn) == before


def test_launch_huge_command_is_submitted_intact(db: str, conn: psycopg.Connection[Any]) -> None:
    command = "echo " + "x" * 500_000
    result = _invoke(db, "launch", "--shell", "--", command)
    assert result.exit_code == 0, result.output
    stored = conn.execute("SELECT command FROM scitq.task").fetchone()
    assert stored == (command,)


def test_launch_invalid_utf8_argument(db: str, conn: psycopg.Connection[Any]) -> None:
    """Bytes that are not UTF-8 in argv: a one-line error, or stored without loss."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    before = snapshot(conn)
    done = subprocess.run(
        [
            sys.executable.encode(),
            b"-m",
            b"scitq",
            b"--database-url",
            db.encode(),
            b"launch",
            b"--",
            b"echo",
            b"\xff\xfe",
        ],
        capture_output=True,
        env=env,
        timeout=60,
    )
    stderr = done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr, stderr
    if done.returncode == 0:
        (command,) = conn.execute("SELECT command FROM scitq.task").fetchone()  # type: ignore[misc]
        assert command.encode("utf-8", "surrogateescape").endswith(b"\xff\xfe") or "\\x" in command
    else:
        assert done.returncode == 2, stderr
        assert len(stderr.splitlines()) == 1 and "UTF-8" in stderr, stderr
        assert snapshot(conn) == before


WORKER_SET: list[tuple[list[str], str]] = [
    (["-c", "-1"], "--concurrency"),
    (["-c", HUGE_NUMBER], "--concurrency"),
    (["-c", INT_OVERFLOW], "--concurrency"),
    (["-p", "-1"], "--prefetch"),
    (["-p", INT_OVERFLOW], "--prefetch"),
    (["-c", "lots"], "--concurrency"),
]


@pytest.mark.parametrize(
    ("args", "fragment"), [pytest.param(a, f, id=" ".join(a)) for a, f in WORKER_SET]
)
def test_worker_set_option_refused(
    db: str, conn: psycopg.Connection[Any], args: list[str], fragment: str
) -> None:
    worker_register(conn, "w1")
    before = snapshot(conn)
    result = _invoke(db, "worker", "set", *args, "w1")
    assert_refused(result, fragment)
    assert snapshot(conn) == before


def test_worker_set_unknown_worker(db: str, conn: psycopg.Connection[Any]) -> None:
    before = snapshot(conn)
    for name in ("nobody", "' OR 1=1 --", "x" * 100_000):
        result = _invoke(db, "worker", "set", "-c", "2", name)
        assert result.exit_code == 4, result.output
        assert len(result.stderr.splitlines()) == 1, result.stderr
    assert snapshot(conn) == before


AGENT: list[tuple[list[str], str]] = [
    (["--lease", "-1"], "--lease"),
    (["--lease", "0"], "--lease"),
    (["--lease", "nan"], "--lease"),
    (["--lease", "inf"], "--lease"),
    (["--heartbeat", "0"], "--heartbeat"),
    (["--heartbeat", "nan"], "--heartbeat"),
    (["--poll-min", "-1"], "--poll-min"),
    (["--poll-max", "0"], "--poll-max"),
    (["--poll-min", "5", "--poll-max", "1"], "--poll-min"),
    (["--shutdown-grace", "-1"], "--shutdown-grace"),
    (["--shutdown-grace", "nan"], "--shutdown-grace"),
    (["--concurrency", "-1"], "--concurrency"),
    (["--concurrency", HUGE_NUMBER], "--concurrency"),
    (["--concurrency", INT_OVERFLOW], "--concurrency"),
    (["--prefetch", "-1"], "--prefetch"),
    (["--prefetch", INT_OVERFLOW], "--prefetch"),
    (["--concurrency", "x"], "--concurrency"),
    (["--name", ""], "name"),
    (["--name", "a\tb"], "name"),
    (["--min-free-disk", "lots"], "--min-free-disk"),
    (["--cache-max", "-1G"], "--cache-max"),
    (["--keep-failed-hours", "-1"], "--keep-failed-hours"),
    (["--metrics-interval", "nan"], "--metrics-interval"),
    (["--registry-auth-file", "/nonexistent/auth.json"], "--registry-auth-file"),
]


@pytest.mark.parametrize(
    ("args", "fragment"), [pytest.param(a, f, id=" ".join(a)) for a, f in AGENT]
)
def test_agent_option_refused(
    db: str, conn: psycopg.Connection[Any], tmp_path: Path, args: list[str], fragment: str
) -> None:
    """The agent exits with a one-line error instead of starting (or retrying forever)."""
    before = snapshot(conn)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    if "--name" not in args:
        args = [*args, "--name", "bad-input-agent"]
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "scitq",
                "--database-url",
                db,
                "agent",
                "--work-dir",
                str(tmp_path / "work"),
                "--drain",
                *args,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"scitq agent {' '.join(args)} was not refused: it kept running")
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    if done.stderr.startswith("Usage:"):
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and fragment in errors[0], done.stderr
    else:
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("scitq: error: "), done.stderr[-2000:]
        assert fragment in lines[0], lines[0]
    assert snapshot(conn) == before


def test_env_var_name_the_system_cannot_pass_fails_the_task_not_the_agent(
    conn: psycopg.Connection[Any], start_agent: Any
) -> None:
    """Rows stored before task_submit_v1 refused such names (env names with '=' or
    empty): the agent fails those tasks clearly and goes on."""
    task_submit(
        conn,
        "envs",
        [{"command": "true"}, {"command": "true"}, {"command": "true", "name": "fine"}],
    )
    # what an older version let in (the superuser test connection writes it directly)
    conn.execute(
        'UPDATE scitq.task SET env = CASE id WHEN 1 THEN \'{"A=B": "x"}\'::jsonb'
        " ELSE '{\"=C\": \"x\"}'::jsonb END WHERE name IS DISTINCT FROM 'fine'"
    )
    agent = start_agent("-b", "envs", "--drain")
    assert agent.wait(timeout=60) == 0, agent.log()[-3000:]
    rows = conn.execute(
        "SELECT t.name, t.status, e.failure_reason FROM scitq.task t "
        "JOIN scitq.execution e ON e.task_id = t.id ORDER BY t.id"
    ).fetchall()
    assert rows[2][:2] == ("fine", "succeeded")
    for _, status, reason in rows[:2]:
        assert status == "failed"
        assert reason and "env" in reason.lower(), reason
    assert json.dumps(rows)


def test_agent_with_an_unreachable_database_stops_on_sigterm(tmp_path: Path) -> None:
    import signal

    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scitq",
            "--database-url",
            "host=/nonexistent-scitq dbname=x connect_timeout=1",
            "agent",
            "--work-dir",
            str(tmp_path / "work"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        import time

        time.sleep(3)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("the agent ignored SIGTERM while it could not reach the database")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode is not None
