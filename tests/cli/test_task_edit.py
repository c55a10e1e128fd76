"""`scitq task update|rerun`, and what `task show` says of edits."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.cli.conftest import Invoke, assert_one_line_error, claim, register, run_to_end, submit

pytestmark = pytest.mark.sql


def test_update_changes_fields_and_show_lists_the_edit(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    (task,) = submit(conn, "a", {"command": "true", "name": "x", "container": "img"})
    result = invoke("task", "update", str(task), "--command", "echo new", "--retries", "3",
                    "--clear", "container", "-e", "A=1", "--tag", "t")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == f"task {task} updated: now pending\n"
    shown = json.loads(invoke("task", "show", str(task), "--json").stdout)
    assert (shown["command"], shown["retries"], shown["container"]) == ("echo new", 3, None)
    assert shown["env"] == {"A": "1"} and shown["tags"] == ["t"]
    (edit,) = shown["edits"]
    assert edit["fields"]["container"] == {"from": "img", "to": None}
    table = invoke("task", "show", str(task)).stdout
    assert 'command "true" -> "echo new"' in " ".join(table.split())


def test_update_of_a_succeeded_task_reruns_it(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    (task,) = submit(conn, "a", {"command": "true"})
    worker = register(conn, batches=["a"])
    run_to_end(conn, worker, claim(conn, worker)[0]["execution_id"])
    result = invoke("task", "update", str(task), "--run-timeout", "60", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"id": task, "status": "pending", "rerun": True}]
    # --no-rerun edits a finished task in place
    result = invoke("task", "update", str(task), "--run-timeout", "90", "--no-rerun")
    assert result.stdout == f"task {task} updated: now pending\n"


def test_rerun_reports_what_it_did_and_refuses_when_nothing_could(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    done, waiting = submit(conn, "a", {"command": "true"}, {"command": "true"})
    worker = register(conn, batches=["a"])
    run_to_end(conn, worker, claim(conn, worker)[0]["execution_id"])
    result = invoke("task", "rerun", str(done), str(waiting))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"task {done} rerun: now pending\n"
    assert f"skipped (waiting, pending and paused tasks): {waiting}" in result.stderr
    assert_one_line_error(invoke("task", "rerun", str(waiting)), 5, "nothing rerun")
    attempts = json.loads(invoke("task", "show", str(done), "--json").stdout)["executions"]
    assert [a["attempt"] for a in attempts] == [1]  # kept, the new one is not claimed yet


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["1"], 2, "nothing to change"),
        (["999999", "--retries", "1"], 4, "no task 999999"),
        (["{task}", "--clear", "name", "--name", "y"], 2, "--clear name and a new name"),
        (["{task}", "--input", "nowhere://x"], 2, "nowhere"),
        (["{task}", "--command", " "], 2, "no command"),
    ],
)
def test_bad_updates_get_one_line(
    invoke: Invoke, conn: psycopg.Connection[Any], args: list[str], code: int, fragment: str
) -> None:
    (task,) = submit(conn, "a", {"command": "true"})
    result = invoke("task", "update", *(a.format(task=task) for a in args))
    if code == 2 and fragment == "nothing to change":
        assert result.exit_code == 2 and fragment in result.output
        return
    assert_one_line_error(result, code, fragment)
