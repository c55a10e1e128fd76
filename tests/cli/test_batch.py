"""`scitq batch list|show|pause|resume|retry-failed|cancel|delete|wait`."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

import psycopg
import pytest

from scitq.cli.batch import EXIT_TASKS_FAILED, EXIT_TIMEOUT
from scitq.db.execution import execution_set_phase
from scitq.db.task import task_claim
from scitq.db.worker import worker_heartbeat
from tests.cli.conftest import (
    Invoke,
    assert_one_line_error,
    claim,
    register,
    run_to_end,
    scitq_process,
    submit,
)

pytestmark = pytest.mark.sql


def test_list_and_show(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    submit(conn, "rna", {"command": "a"}, {"command": "b"}, {"command": "c"})
    submit(conn, "dna", {"command": "a"})
    worker = register(conn, "w1", batches=["rna"])
    run_to_end(conn, worker, claim(conn, worker)[0]["execution_id"], wall_seconds=2.0)

    listed = json.loads(invoke("batch", "list", "--json").stdout)
    assert [(b["batch"], b["total"], b["succeeded"], b["remaining"]) for b in listed] == [
        ("rna", 3, 1, 2), ("dna", 1, 0, 1),
    ]  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(invoke("batch", "list", "--csv").stdout)))
    assert [(r["batch"], r["pending"]) for r in rows] == [("rna", "2"), ("dna", "1")]
    assert "rna" in invoke("batch", "list").stdout

    shown = json.loads(invoke("batch", "show", "rna", "--json").stdout)
    assert (shown["total"], shown["succeeded"]) == (3, 1)
    assert shown["executions"]["executions"] == 1
    assert [w["name"] for w in shown["workers"]] == ["w1"]
    text = invoke("batch", "show", "rna")
    assert "2 pending, 1 succeeded" in text.stdout and "w1 (online)" in text.stdout
    assert_one_line_error(invoke("batch", "show", "nope"), 4, "batch 'nope' does not exist")


def test_pause_resume_retry_cancel(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    a, b = submit(conn, "x", {"command": "a"}, {"command": "b"})
    worker = register(conn, "w1", concurrency=2)
    running = claim(conn, worker)[0]["execution_id"]
    execution_set_phase(conn, worker, running, "running")

    paused = invoke("batch", "pause", "x", "--running")
    assert paused.exit_code == 0, paused.output
    assert "1 running task(s) suspended" in paused.stdout
    assert task_claim(conn, worker, 1) == []  # the batch is paused
    signals = worker_heartbeat(conn, worker, [running])["signals"]
    assert [s["kind"] for s in signals] == ["pause"]

    assert invoke("batch", "resume", "x").exit_code == 0
    assert len(task_claim(conn, worker, 1)) == 1

    canceled = invoke("batch", "cancel", "x", "--reason", "stop")
    assert "2 task(s) canceled" in canceled.stdout
    retried = invoke("batch", "retry-failed", "x")
    assert retried.exit_code == 0
    assert "2 task(s) retried" in retried.stdout
    assert "0 task(s) retried" in invoke("batch", "retry", "x").stdout
    states = conn.execute("SELECT status FROM scitq.task WHERE id = ANY(%s)", ([a, b],))
    assert {row[0] for row in states} == {"pending"}
    assert_one_line_error(invoke("batch", "pause", "nope"), 4, "does not exist")


def test_delete_asks_unless_yes(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    submit(conn, "x", {"command": "a"}, {"command": "b"})
    assert invoke("batch", "delete", "x", input="n\n").exit_code == 1
    assert conn.execute("SELECT count(*) FROM scitq.batch").fetchone() == (1,)

    result = invoke("batch", "delete", "x", "-y")

    assert result.exit_code == 0
    assert "deleted with 2 task(s)" in result.stdout
    assert conn.execute("SELECT count(*) FROM scitq.task").fetchone() == (0,)


def _finish_all(conn: psycopg.Connection[Any], worker: int, return_code: int) -> None:
    for row in claim(conn, worker, 10):
        run_to_end(conn, worker, row["execution_id"], return_code=return_code)
        time.sleep(0.2)


def test_wait_follows_the_batch_and_exits_0_when_all_succeeded(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    submit(conn, "w", *({"command": str(i)} for i in range(3)))
    process = scitq_process(db, "batch", "wait", "w", "--interval", "0.1")
    try:
        time.sleep(1.0)
        assert process.poll() is None  # three tasks left
        _finish_all(conn, register(conn, "w1", concurrency=3), 0)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "batch w: 3 succeeded, 0 failed, 0 canceled" in stdout
    assert "3/3" in stderr  # the progress bar


def test_wait_exits_8_when_tasks_failed(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    submit(conn, "w", {"command": "a"}, {"command": "b"})
    _finish_all(conn, register(conn, "w1", concurrency=2), 1)

    result = invoke("batch", "wait", "w", "--json")

    assert result.exit_code == EXIT_TASKS_FAILED == 8
    final = json.loads(result.stdout)
    assert (final["failed"], final["remaining"]) == (2, 0)


def test_wait_times_out_with_exit_9(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    submit(conn, "w", {"command": "a"})
    started = time.monotonic()

    result = invoke("batch", "wait", "w", "--timeout", "0.5", "--interval", "0.1", "-q")

    assert time.monotonic() - started < 10
    assert_one_line_error(result, EXIT_TIMEOUT, "batch 'w' still has 1 task to run after 0.5 s")
    assert_one_line_error(invoke("batch", "wait", "nope"), 4, "batch 'nope' does not exist")
