"""Two agents on one host are two workers: a second agent never takes over a live one.

Real `scitq agent` processes without --name or --work-dir, as a user starts them (the
README's `scitq agent --drain` while `scitq up` runs), against a real database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scitq.db.task import task_cancel, task_submit
from scitq.db.worker import worker_heartbeat, worker_register
from tests.cli.conftest import PROJECT_ROOT
from tests.fixtures.agents import wait_for

pytestmark = pytest.mark.sql


def agent(db: str, data_dir: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``scitq agent ARGS`` with only the data dir set: the defaults a user gets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env.update(PYTHONPATH=str(PROJECT_ROOT), PYTHONUNBUFFERED="1", SCITQ_DATA_DIR=str(data_dir))
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "scitq", "--database-url", db, "agent", *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def workers(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT name, batches, concurrency, liveness FROM scitq.worker_overview"
    ).fetchall()
    return {row[0]: {"batches": row[1], "concurrency": row[2], "liveness": row[3]} for row in rows}


def execution_statuses(conn: psycopg.Connection[Any], task_id: int) -> list[str]:
    rows = conn.execute(
        "SELECT status::text FROM scitq.execution WHERE task_id = %s ORDER BY id", (task_id,)
    ).fetchall()
    return [row[0] for row in rows]


def test_a_second_agent_on_the_host_is_another_worker(
    db: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    [long] = task_submit(conn, "main", [{"command": "sleep 600"}])
    first = agent(
        db, data, tmp_path / "first.log", "--all-batches", "-c", "1", "--shutdown-grace", "1"
    )  # full
    try:
        wait_for(lambda: execution_statuses(conn, long["id"]) == ["running"], timeout=60)
        # the README's quick start while `scitq up`'s agent runs
        [demo] = task_submit(conn, "demo", [{"command": "echo hello", "name": "hello"}])
        second = agent(
            db, data, tmp_path / "second.log", "--batch", "demo", "--concurrency", "4", "--drain"
        )
        assert second.wait(timeout=60) == 0, (tmp_path / "second.log").read_text()
        status = conn.execute("SELECT status FROM scitq.task WHERE id = %s", (demo["id"],))
        assert status.fetchone() == ("succeeded",)
        # the first agent's execution was not taken over: still running, still its only one
        assert execution_statuses(conn, long["id"]) == ["running"]
        assert first.poll() is None
        found = workers(conn)
        assert len(found) == 2, found
        [mine] = [name for name, w in found.items() if w["batches"] == []]
        [other] = [name for name, w in found.items() if w["batches"] == ["demo"]]
        host = socket.gethostname()
        assert mine.startswith(f"{host}-") and other.startswith(f"{host}-") and mine != other
        assert found[mine]["concurrency"] == 1 and found[mine]["liveness"] == "online"
        assert (data / "work" / "worker-name").read_text().strip() == mine
        assert (data / "work-2" / "worker-name").read_text().strip() == other
        second_log = (tmp_path / "second.log").read_text()
        assert f"agent: worker {other} (id " in second_log
        assert "serving batches demo, 4 slots" in second_log
        assert f"work dir {data / 'work-2'}" in second_log
        assert "a second Ctrl-C kills them" in second_log
        assert f"task {demo['id']} 'hello' of batch demo, attempt 1: succeeded in" in second_log
    finally:
        stop(first)
    task_cancel(conn, [long["id"]], "test over")
    # a restarted agent resumes its own worker (the name is kept in its work dir)
    again = agent(db, data, tmp_path / "again.log", "--drain")
    assert again.wait(timeout=60) == 0, (tmp_path / "again.log").read_text()
    assert f"agent: worker {mine} (id " in (tmp_path / "again.log").read_text()
    assert len(workers(conn)) == 2


def test_a_work_dir_or_a_name_held_by_a_live_agent_is_refused(
    db: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    [long] = task_submit(conn, "main", [{"command": "sleep 600"}])
    work = tmp_path / "work"
    first = agent(db, data, tmp_path / "first.log", "--name", "alpha", "--work-dir", str(work),
                  "--shutdown-grace", "1")  # fmt: skip
    try:
        wait_for(lambda: execution_statuses(conn, long["id"]) == ["running"], timeout=60)
        same_dir = agent(db, data, tmp_path / "dir.log", "--work-dir", str(work))
        assert same_dir.wait(timeout=60) == 2
        [line] = (tmp_path / "dir.log").read_text().splitlines()
        assert line == (
            f"scitq: error: work dir {work} is in use by the agent of worker 'alpha', "
            f"pid {first.pid}: give this agent another --work-dir"
        )
        same_name = agent(db, data, tmp_path / "name.log", "--name", "alpha")
        assert same_name.wait(timeout=60) == 2
        [line] = (tmp_path / "name.log").read_text().splitlines()
        assert line.startswith("scitq: error: worker 'alpha' is already served by an agent")
        assert f"pid {first.pid}" in line
        assert execution_statuses(conn, long["id"]) == ["running"]
        assert list(workers(conn)) == ["alpha"]
    finally:
        stop(first)


def test_a_name_live_on_another_host_is_refused(
    db: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    worker = worker_register(conn, "beta", hostname="elsewhere.example.org", batches=["b"])
    worker_heartbeat(conn, int(worker["id"]))
    taken = agent(db, tmp_path / "data", tmp_path / "beta.log", "--name", "beta", "--drain")
    assert taken.wait(timeout=60) == 2
    [line] = (tmp_path / "beta.log").read_text().splitlines()
    assert line.startswith("scitq: error: worker 'beta' is live on host elsewhere.example.org")
    assert workers(conn)["beta"]["batches"] == ["b"]  # untouched
