"""`scitq worker list|set|pause|resume|delete`."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import psycopg
import pytest

from scitq.db.task import task_claim
from scitq.db.worker import worker_heartbeat
from tests.cli.conftest import Invoke, assert_one_line_error, claim, register, submit

pytestmark = pytest.mark.sql


def worker_row(conn: psycopg.Connection[Any], worker_id: int) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT batches, concurrency, prefetch, is_paused, is_draining, is_permanent "
        "FROM scitq.worker WHERE id = %s",
        (worker_id,),
    ).fetchone()


def test_list(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    submit(conn, "b", {"command": "a"})
    first = register(conn, "node1", hostname="node1.lab", batches=["b"], concurrency=4)
    claim(conn, first)
    register(conn, "node2")

    listed = json.loads(invoke("worker", "list", "--json").stdout)

    assert [(w["name"], w["batches"], w["concurrency"], w["assigned"]) for w in listed] == [
        ("node1", ["b"], 4, 1), ("node2", [], 1, 0),
    ]  # fmt: skip
    assert listed[0]["liveness"] == "online"
    rows = list(csv.DictReader(io.StringIO(invoke("worker", "list", "--csv").stdout)))
    assert [(r["name"], r["hostname"], r["batches"]) for r in rows] == [
        ("node1", "node1.lab", '["b"]'), ("node2", "", "[]"),
    ]  # fmt: skip
    table = invoke("worker", "list").stdout
    assert "node1.lab" in table and "(all)" in table


def test_set_changes_only_what_is_given(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    worker = register(conn, "node1", batches=["a"], concurrency=2, prefetch=1)

    result = invoke("worker", "set", "node1", "-c", "8", "-b", "x", "-b", "y", "--not-permanent")

    assert result.exit_code == 0, result.output
    assert "concurrency 8, prefetch 1, serves x, y" in result.stdout
    assert worker_row(conn, worker) == (["x", "y"], 8, 1, False, False, False)

    by_id = invoke("worker", "set", str(worker), "--all-batches", "--drain", "--json")
    assert json.loads(by_id.stdout)["batches"] == []
    assert worker_row(conn, worker) == ([], 8, 1, False, True, False)
    config = worker_heartbeat(conn, worker)
    assert (config["concurrency"], config["is_draining"]) == (8, True)  # what the agent gets


def test_set_errors(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    register(conn, "node1")
    assert invoke("worker", "set", "node1").exit_code == 2  # nothing to change
    assert invoke("worker", "set", "node1", "-b", "x", "--all-batches").exit_code == 2
    assert invoke("worker", "set", "node1", "-c", "-1").exit_code == 2
    assert_one_line_error(invoke("worker", "set", "ghost", "-c", "2"), 4, "no worker named 'ghost'")


def test_pause_resume_and_a_name_made_of_digits(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    worker = register(conn, "node1")
    numbered = register(conn, str(worker))  # a worker named like the other's id

    assert invoke("worker", "pause", "node1").exit_code == 0
    assert worker_row(conn, worker)[3] is True  # type: ignore[index]
    submit(conn, "b", {"command": "a"})
    assert task_claim(conn, worker, 1) == []

    assert "paused" not in invoke("worker", "resume", "node1").stdout
    assert worker_row(conn, worker)[3] is False  # type: ignore[index]

    invoke("worker", "pause", str(worker))  # the name wins over the id
    assert worker_row(conn, numbered)[3] is True  # type: ignore[index]
    assert worker_row(conn, worker)[3] is False  # type: ignore[index]


def test_delete_requeues_its_tasks(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    (task,) = submit(conn, "b", {"command": "a", "retries": 1})
    worker = register(conn, "node1")
    claim(conn, worker)

    assert invoke("worker", "delete", "node1", input="n\n").exit_code == 1
    assert worker_row(conn, worker) is not None
    result = invoke("worker", "delete", "node1", "--yes")

    assert result.exit_code == 0, result.output
    assert worker_row(conn, worker) is None
    status = conn.execute("SELECT status FROM scitq.task WHERE id = %s", (task,)).fetchone()
    assert status == ("pending",)
    assert_one_line_error(invoke("worker", "delete", "node1", "-y"), 4, "no worker named")
