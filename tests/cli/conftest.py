"""Helpers for the CLI tests: run ``scitq`` in-process or as a process, and play the agent
side through the SQL functions (register, claim, output, finish)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from scitq.cli import scitq
from scitq.db.execution import execution_append_output, execution_finish, execution_set_phase
from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_register

PROJECT_ROOT = Path(__file__).resolve().parents[2]

Invoke = Callable[..., Result]


@pytest.fixture
def invoke(db: str) -> Invoke:
    """Run ``scitq --database-url <test db> ARGS...`` in-process."""

    def run(*args: str, **kwargs: Any) -> Result:
        return CliRunner().invoke(scitq, ["--database-url", db, *args], **kwargs)

    return run


def scitq_process(db: str, *args: str) -> subprocess.Popen[str]:
    """``python -m scitq --database-url DB ARGS...`` as a process (stdout, stderr piped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "scitq", "--database-url", db, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def assert_one_line_error(result: Result, exit_code: int, fragment: str) -> None:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("scitq: error: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def submit(conn: psycopg.Connection[Any], batch: str, *tasks: dict[str, Any]) -> list[int]:
    return [row["id"] for row in task_submit(conn, batch, list(tasks))]


def register(conn: psycopg.Connection[Any], name: str = "w1", **options: Any) -> int:
    return int(worker_register(conn, name, **options)["id"])


def claim(
    conn: psycopg.Connection[Any], worker: int, limit: int = 1, *, later: bool = False
) -> list[dict[str, Any]]:
    """Claim tasks; ``later``: an hour from now, after any retry back-off."""
    now = datetime.now(UTC) + timedelta(hours=1) if later else None
    claims = task_claim(conn, worker, limit, now=now)
    assert claims, "nothing was claimed"
    return claims


def run_to_end(
    conn: psycopg.Connection[Any],
    worker: int,
    execution_id: int,
    output: Sequence[tuple[str, str]] = (),
    return_code: int = 0,
    **result: Any,
) -> None:
    """Run a claimed execution: phase running, output ``(stream, text)`` chunks, finish."""
    execution_set_phase(conn, worker, execution_id, "running")
    if output:
        chunks = [(execution_id, seq, stream, text) for seq, (stream, text) in enumerate(output)]
        execution_append_output(conn, worker, chunks)
    execution_finish(
        conn, worker, [{"execution_id": execution_id, "return_code": return_code, **result}]
    )
