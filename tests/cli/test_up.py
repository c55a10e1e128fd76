"""`scitq up` as a process: it runs submitted tasks and stops without leaving anything."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from scitq.db.task import task_get, task_submit
from scitq.embedded.server import EmbeddedServer
from tests.cli.conftest import PROJECT_ROOT
from tests.fixtures.agents import wait_for

pytestmark = pytest.mark.sql

READY = "press Ctrl-C to stop"


class Up:
    """One ``scitq up`` process, its output in files."""

    def __init__(
        self, env: dict[str, str], base: Path, *args: str, up_args: tuple[str, ...] = ()
    ) -> None:
        self.out_path, self.err_path = base / "up.out", base / "up.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "scitq", *args, "up", "--concurrency", "2", *up_args],
                stdout=out,
                stderr=err,
                env=env,
            )

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        wait_for(lambda: READY in self.stdout() or self.process.poll() is not None, timeout=120)
        assert self.process.poll() is None, self.stdout() + self.stderr()

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def child(self, role: str) -> psutil.Process:
        [found] = [p for p in psutil.Process(self.process.pid).children() if role in p.cmdline()]
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            descendants = self.children()
            self.process.kill()
            self.process.wait()
            for proc in descendants:
                with contextlib.suppress(psutil.Error):
                    proc.kill()


@pytest.fixture
def base() -> Iterator[Path]:
    """A fresh directory under /tmp that the embedded server's user can traverse."""
    directory = Path(tempfile.mkdtemp(prefix="scitq-up-", dir="/tmp"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        EmbeddedServer(directory / "data").stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def env(base: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    environ.update(PYTHONPATH=str(PROJECT_ROOT), SCITQ_DATA_DIR=str(base / "data"))
    environ["SCITQ_WEB_PORT"] = str(_free_port())  # tests may run side by side
    return environ


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def started() -> Iterator[list[Up]]:
    ups: list[Up] = []
    yield ups
    for up in ups:
        up.stop()


def _status(conninfo: str, task_id: int) -> str:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        task = task_get(conn, task_id)
        assert task is not None
        return str(task["status"])


def _run_a_task_then_interrupt(up: Up, conninfo: str) -> None:
    up.wait_ready()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        [row] = task_submit(conn, "demo", [{"command": "echo hello"}])
    task_id = int(row["id"])
    wait_for(lambda: _status(conninfo, task_id) in ("succeeded", "failed"), timeout=60)
    assert _status(conninfo, task_id) == "succeeded"

    descendants = up.children()
    assert len(descendants) >= 3  # the scheduler, the agent and the web dashboard
    started = time.monotonic()
    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(timeout=30) == 0, up.stdout() + up.stderr()
    assert time.monotonic() - started < 20
    alive = [p.pid for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert "stopped the scheduler, the agent and the web (SIGINT)" in up.stdout()


def test_up_runs_a_task_and_stops_on_sigint(
    db: str, env: dict[str, str], base: Path, started: list[Up]
) -> None:
    up = Up(env, base, "--database-url", db)
    started.append(up)
    _run_a_task_then_interrupt(up, db)
    out = up.stdout()
    assert "scitq launch --batch demo -- echo hello" in out
    assert "scitq task list" in out
    assert "agent: pid" in out and "concurrency 2" in out
    assert "embedded" not in out


def test_up_serves_the_web_dashboard(
    db: str, env: dict[str, str], base: Path, started: list[Up]
) -> None:
    up = Up(env, base, "--database-url", db)
    started.append(up)
    up.wait_ready()
    port = env["SCITQ_WEB_PORT"]
    assert f"web: http://127.0.0.1:{port}/" in up.stdout()
    assert "scitq web create-user NAME --role admin" in up.stdout()

    def login_page() -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as page:
                return bytes(page.read())
        except OSError:
            return None

    assert b"Log in to scitq" in wait_for(login_page, timeout=60)
    assert up.child("web").is_running()


def test_up_with_the_embedded_server(env: dict[str, str], base: Path, started: list[Up]) -> None:
    up = Up(env, base)
    started.append(up)
    up.wait_ready()
    server = EmbeddedServer(base / "data")
    assert server.is_running()
    _run_a_task_then_interrupt(up, server.ensure_running())
    out = up.stdout()
    assert f"database: embedded PostgreSQL in {base / 'data'}" in out
    assert "`scitq db stop` stops it" in out
    assert server.is_running()  # left running, like other commands


def test_up_stops_when_the_agent_dies(
    db: str, env: dict[str, str], base: Path, started: list[Up]
) -> None:
    up = Up(env, base, "--database-url", db)
    started.append(up)
    up.wait_ready()
    descendants = up.children()
    agent = up.child("agent")
    agent.kill()
    code = up.process.wait(timeout=30)
    assert code != 0
    errors = [line for line in up.stderr().splitlines() if line.startswith("scitq: error:")]
    assert len(errors) == 1, up.stderr()
    assert f"the agent (pid {agent.pid}) was killed by SIGKILL" in errors[0]
    assert "stopping the scheduler" in errors[0]
    alive = [p.pid for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_a_second_up_says_so_in_one_line_and_starts_nothing(
    db: str, env: dict[str, str], base: Path, started: list[Up], tmp_path: Path
) -> None:
    up = Up(env, base, "--database-url", db)
    started.append(up)
    up.wait_ready()
    with psycopg.connect(db, autocommit=True) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM scitq.worker").fetchone() == (1,))
    second = Up(env, tmp_path, "--database-url", db)
    started.append(second)
    assert second.process.wait(timeout=60) == 2
    port = env["SCITQ_WEB_PORT"]
    assert second.stderr().splitlines() == [
        f"scitq: error: port {port} of 127.0.0.1 is in use (another `scitq up` or `scitq web`?): "
        "give --web-port PORT, or --no-web"
    ]
    assert second.stdout() == ""
    with psycopg.connect(db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM scitq.worker").fetchone() == (1,)
    assert up.process.poll() is None


def test_a_second_up_without_web_is_a_second_worker(
    db: str, env: dict[str, str], base: Path, started: list[Up], tmp_path: Path
) -> None:
    up = Up(env, base, "--database-url", db)
    started.append(up)
    up.wait_ready()
    second = Up(env, tmp_path, "--database-url", db, up_args=("--no-web",))
    started.append(second)
    second.wait_ready()
    with psycopg.connect(db, autocommit=True) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM scitq.worker").fetchone() == (2,))
        names = conn.execute("SELECT name, batches FROM scitq.worker ORDER BY id").fetchall()
    assert [batches for _, batches in names] == [[], []]
    assert names[0][0] != names[1][0]
