"""What people read: no repeated words, units on numbers, statuses named as statuses."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.cli.conftest import Invoke, assert_one_line_error, claim, register, run_to_end, submit

pytestmark = pytest.mark.sql


def test_an_exit_failure_says_its_code_once(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    [task] = submit(conn, "w", {"command": "false", "retries": 0})
    worker = register(conn, "node1")
    [claimed] = claim(conn, worker)
    run_to_end(conn, worker, claimed["execution_id"], return_code=1, failure_class="exit",
               failure_reason="exit code 1")  # fmt: skip
    explained = json.loads(invoke("task", "explain", str(task), "--json").stdout)
    assert "ended (exit, exit code 1);" in explained["message"]
    assert "exit code 1: exit code 1" not in explained["message"]


def test_task_show_gives_durations_and_sizes_units(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    [task] = submit(conn, "w", {"command": "true", "retry_delay_seconds": 90, "retries": 0})
    worker = register(conn, "node1")
    [claimed] = claim(conn, worker)
    run_to_end(conn, worker, claimed["execution_id"], wall_seconds=2.345678,
               peak_rss_bytes=3 * 2**20 + 5)  # fmt: skip
    shown = invoke("task", "show", str(task))
    assert shown.exit_code == 0, shown.output
    lines = {line.split()[0]: line.split(None, 1)[1] for line in shown.stdout.splitlines()
             if line.strip() and not line.startswith((" ", "─", "━"))}  # fmt: skip
    assert lines["retry_delay_seconds"].strip() == "1m30s"
    assert lines["wall_seconds"].strip() == "2.3 s"
    assert lines["peak_rss_bytes"].strip() == "3.0 MiB"
    assert "2.345678" not in shown.stdout


def test_nothing_done_names_the_status_as_one(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    [task] = submit(conn, "w", {"command": "true"})
    worker = register(conn, "node1")
    run_to_end(conn, worker, claim(conn, worker)[0]["execution_id"])
    result = invoke("task", "retry", str(task))
    assert_one_line_error(result, 5, f"nothing retried: task {task} (succeeded)")
    assert "is succeeded" not in result.stderr
