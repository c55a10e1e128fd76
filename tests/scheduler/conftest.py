"""``scitq scheduler`` as real processes against a test database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scitq.scheduler.leadership import SCHEDULER_LOCK


class SchedulerProcess:
    """One ``scitq scheduler`` process and its log."""

    def __init__(self, conninfo: str, log_path: Path, args: list[str]) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = [sys.executable, "-m", "scitq", "--database-url", conninfo, "scheduler", *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        #: The name it records with its decisions and shows in pg_stat_activity.
        self.name = f"{socket.gethostname()}:{self.process.pid}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture
def start_scheduler(db: str, tmp_path: Path) -> Iterator[Callable[..., SchedulerProcess]]:
    """Start schedulers on this test's database with short periods for tests."""
    started: list[SchedulerProcess] = []

    def start(*args: str) -> SchedulerProcess:
        options = ["--interval", "0.5", "--lock-retry", "0.5", *args]
        process = SchedulerProcess(db, tmp_path / f"scheduler-{len(started)}.log", options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def lock_holder(conn: psycopg.Connection[Any]) -> str | None:
    """The application_name of the session holding the scheduler lock, if any."""
    row = conn.execute(
        """
        SELECT a.application_name
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid::bigint = %(key)s::bigint >> 32
          AND l.objid::bigint = %(key)s::bigint & 4294967295
        """,
        {"key": SCHEDULER_LOCK},
    ).fetchone()
    return None if row is None else str(row[0])
