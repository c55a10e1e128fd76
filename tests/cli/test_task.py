"""`scitq task list|show|log|retry|cancel|pause|resume|delete`."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from scitq.cli import scitq
from scitq.db.execution import execution_append_output, execution_finish, execution_set_phase
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


def listed(result: Any) -> list[int]:
    assert result.exit_code == 0, result.output
    return [task["id"] for task in json.loads(result.stdout)]


@pytest.fixture
def mixed(conn: psycopg.Connection[Any]) -> dict[str, list[int]]:
    """Batch a: 5 tasks (2 run on w1: one succeeded, one failed); batch b: 3 tasks."""
    a = submit(conn, "a", *({"command": "true", "name": f"align_{i}"} for i in range(5)))
    b = submit(conn, "b", *({"command": "true", "name": f"Count_{i}"} for i in range(3)))
    worker = register(conn, "w1", batches=["a"], concurrency=2)
    first, second = claim(conn, worker, 2)
    run_to_end(conn, worker, first["execution_id"])
    run_to_end(conn, worker, second["execution_id"], return_code=1)
    return {"a": a, "b": b}


def test_list_filters(invoke: Invoke, mixed: dict[str, list[int]]) -> None:
    a, b = mixed["a"], mixed["b"]
    assert listed(invoke("task", "list", "--json")) == a + b
    assert listed(invoke("task", "list", "-b", "b", "--json")) == b
    assert listed(invoke("task", "list", "-s", "failed", "--json")) == [a[1]]
    assert listed(invoke("task", "list", "-s", "succeeded", "-s", "failed", "--json")) == a[:2]
    assert listed(invoke("task", "list", "-b", "a", "-s", "pending", "--json")) == a[2:]
    assert listed(invoke("task", "list", "-n", "count%", "--json")) == b  # case-insensitive
    assert listed(invoke("task", "list", "-n", "align\\_1", "--json")) == [a[1]]
    assert listed(invoke("task", "list", "-w", "w1", "--json")) == a[:2]
    assert listed(invoke("task", "list", "-w", "nobody", "--json")) == []
    assert listed(invoke("task", "list", "--since", "1h", "--json")) == a + b
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert listed(invoke("task", "list", "--since", future, "--json")) == []


def test_list_pages_with_after(invoke: Invoke, mixed: dict[str, list[int]]) -> None:
    every = mixed["a"] + mixed["b"]
    first = listed(invoke("task", "list", "--limit", "3", "--json"))
    second = listed(invoke("task", "list", "--limit", "3", "--after", str(first[-1]), "--json"))
    rest = listed(invoke("task", "list", "--limit", "3", "--after", str(second[-1]), "--json"))
    assert first + second + rest == every
    assert len(rest) == 2
    assert listed(invoke("task", "list", "--all", "--after", str(every[0]), "--json")) == every[1:]

    table = invoke("task", "list", "--limit", "3")
    assert table.exit_code == 0
    assert f"--after {first[-1]} for the next page" in table.stdout
    last_page = invoke("task", "list", "--after", str(every[-3]))
    assert "next page" not in last_page.stdout


def test_list_json_and_csv_carry_the_fields(invoke: Invoke, mixed: dict[str, list[int]]) -> None:
    failed = mixed["a"][1]
    tasks = json.loads(invoke("task", "list", "-s", "failed", "--json").stdout)
    assert tasks[0]["id"] == failed
    assert tasks[0]["worker_name"] == "w1"
    assert tasks[0]["return_code"] == 1
    assert tasks[0]["inputs"] == []
    datetime.fromisoformat(tasks[0]["created_at"])

    result = invoke("task", "list", "-b", "a", "--csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [int(row["id"]) for row in rows] == mixed["a"]
    assert rows[1]["status"] == "failed"
    assert rows[1]["worker_name"] == "w1"
    assert json.loads(rows[1]["env"]) == {}
    assert rows[3]["return_code"] == ""


def test_list_table_and_empty_json(invoke: Invoke, mixed: dict[str, list[int]]) -> None:
    table = invoke("task", "list", "-b", "a")
    assert table.exit_code == 0
    assert "align_1" in table.stdout and "failed" in table.stdout
    assert json.loads(invoke("task", "list", "-b", "a", "-s", "paused", "--json").stdout) == []


def test_list_errors(invoke: Invoke, mixed: dict[str, list[int]]) -> None:
    assert_one_line_error(invoke("task", "list", "-b", "nope"), 4, "batch 'nope' does not exist")
    assert_one_line_error(invoke("task", "list", "--since", "yesterday"), 2, "--since")
    bad_status = invoke("task", "list", "-s", "done")
    assert bad_status.exit_code == 2
    assert "'done' is not one of" in bad_status.stderr


def test_show_gives_fields_dependencies_and_attempts(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    dep, task = submit(
        conn, "s",
        {"command": "true", "name": "dep"},
        {"command": "run", "name": "main", "depends_on_names": ["dep"], "retries": 1,
         "env": {"K": "v"}},
    )  # fmt: skip
    worker = register(conn, "w1")
    run_to_end(conn, worker, claim(conn, worker)[0]["execution_id"])
    for attempt in (1, 2):
        execution = claim(conn, worker, later=attempt == 2)[0]["execution_id"]
        run_to_end(conn, worker, execution, return_code=3, failure_reason=f"boom {attempt}")

    result = invoke("task", "show", str(task), "--json")

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["id"], shown["status"], shown["env"]) == (task, "failed", {"K": "v"})
    assert shown["depends_on"] == [dep]
    assert shown["dependencies"] == [
        {"id": dep, "name": "dep", "batch": "s", "status": "succeeded", "cancel_reason": None}
    ]
    attempts = [(e["attempt"], e["status"], e["failure_reason"]) for e in shown["executions"]]
    assert attempts == [(1, "failed", "boom 1"), (2, "failed", "boom 2")]

    table = invoke("task", "show", str(task))
    assert table.exit_code == 0
    assert "boom 2" in table.stdout and "attempts" in table.stdout
    assert f"task {dep} dep (succeeded)" in table.stdout
    assert_one_line_error(invoke("task", "show", "999"), 4, "task 999 does not exist")


# -- log ----------------------------------------------------------------------------------


@pytest.fixture
def two_attempts(conn: psycopg.Connection[Any]) -> int:
    """A task whose first attempt failed and whose second succeeded, with output."""
    (task,) = submit(conn, "l", {"command": "run", "retries": 1})
    worker = register(conn, "w1")
    run_to_end(conn, worker, claim(conn, worker)[0]["execution_id"],
               [("stdout", "first try\n"), ("stderr", "oops\n")], return_code=1)  # fmt: skip
    output = [("stdout", "line 1\n"), ("stderr", "warn\n"), ("scitq", "uploading\n"),
              ("stdout", "line 2\n")]  # fmt: skip
    run_to_end(conn, worker, claim(conn, worker, later=True)[0]["execution_id"], output)
    return task


def test_log_prints_the_last_attempt_split_by_stream(invoke: Invoke, two_attempts: int) -> None:
    result = invoke("task", "log", str(two_attempts))
    assert result.exit_code == 0, result.output
    assert result.stdout == "line 1\nline 2\n"
    assert result.stderr == "warn\n[scitq] uploading\n"

    only_err = invoke("task", "log", str(two_attempts), "--stderr")
    assert (only_err.stdout, only_err.stderr) == ("warn\n", "")
    first = invoke("task", "log", str(two_attempts), "--attempt", "1", "--stdout")
    assert first.stdout == "first try\n"
    tail = invoke("task", "log", str(two_attempts), "--tail", "1")
    assert tail.stdout == "line 2\n"

    lines = invoke("task", "log", str(two_attempts), "--json").stdout.splitlines()
    chunks = [json.loads(line) for line in lines]
    assert [(c["seq"], c["stream"]) for c in chunks] == [
        (0, "stdout"), (1, "stderr"), (2, "scitq"), (3, "stdout"),
    ]  # fmt: skip


def test_log_errors_and_tasks_that_never_ran(
    invoke: Invoke, conn: psycopg.Connection[Any], two_attempts: int
) -> None:
    assert_one_line_error(invoke("task", "log", str(two_attempts), "--attempt", "3"), 4,
                          "has no attempt 3 (2 attempts so far)")  # fmt: skip
    assert_one_line_error(invoke("task", "log", "999"), 4, "task 999 does not exist")
    (pending,) = submit(conn, "l", {"command": "later"})
    result = invoke("task", "log", str(pending))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert f"task {pending} has not run (pending)" in result.stderr


def test_log_follow_prints_output_live_and_exits_at_the_end(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    (task,) = submit(conn, "f", {"command": "long"})
    process = scitq_process(db, "task", "log", str(task), "-f", "--interval", "0.1")
    try:
        time.sleep(1.0)  # the follower waits for the task to start
        assert process.poll() is None
        worker = register(conn, "w1")
        execution = claim(conn, worker)[0]["execution_id"]
        execution_set_phase(conn, worker, execution, "running")
        for seq in range(3):
            execution_append_output(conn, worker, [(execution, seq, "stdout", f"{seq}\n")])
            time.sleep(0.3)
        assert process.poll() is None  # still following a running execution
        execution_append_output(conn, worker, [(execution, 3, "stdout", "last\n")])
        execution_finish(conn, worker, [{"execution_id": execution, "return_code": 0}])
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert stdout == "0\n1\n2\nlast\n"


# -- actions ------------------------------------------------------------------------------


def statuses(conn: psycopg.Connection[Any], ids: list[int]) -> list[str]:
    rows = dict(conn.execute("SELECT id, status FROM scitq.task WHERE id = ANY(%s)", (ids,)))
    return [rows.get(i, "deleted") for i in ids]


def test_cancel_retry_pause_resume(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    a, b, c = submit(
        conn, "x", {"command": "a", "name": "a"}, {"command": "b", "depends_on_names": ["a"]},
        {"command": "c"},
    )  # fmt: skip

    canceled = invoke("task", "cancel", str(a), "--reason", "wrong input")
    assert canceled.exit_code == 0, canceled.output
    assert f"task {a} canceled: now canceled" in canceled.stdout
    assert statuses(conn, [a, b, c]) == ["canceled", "canceled", "pending"]
    reason = conn.execute("SELECT cancel_reason FROM scitq.task WHERE id = %s", (a,)).fetchone()
    assert reason == ("wrong input",)

    retried = invoke("task", "retry", f"{a}-{b}")
    assert retried.exit_code == 0, retried.output
    assert statuses(conn, [a, b]) == ["pending", "waiting"]

    paused = invoke("task", "pause", f"{a},{c}")
    assert paused.exit_code == 0
    assert statuses(conn, [a, c]) == ["paused", "paused"]
    resumed = invoke("task", "resume", str(a), str(c))
    assert resumed.exit_code == 0
    assert statuses(conn, [a, c]) == ["pending", "pending"]

    worker = register(conn, "w1")
    execution = claim(conn, worker)[0]["execution_id"]  # task a
    execution_set_phase(conn, worker, execution, "running")
    suspended = invoke("task", "pause", str(a))
    assert suspended.exit_code == 0, suspended.output
    assert f"task {a} paused: now running, suspended" in suspended.stdout
    continued = invoke("task", "resume", str(a))
    assert f"task {a} resumed: now running, continued" in continued.stdout
    signals = worker_heartbeat(conn, worker, [execution])["signals"]
    assert [s["kind"] for s in signals] == ["pause", "resume"]


def test_actions_say_what_they_skip_and_fail_when_nothing_applies(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    a, b = submit(conn, "x", {"command": "a"}, {"command": "b"})
    invoke("task", "cancel", str(a))

    partly = invoke("task", "retry", str(a), str(b))
    assert partly.exit_code == 0
    assert f"skipped (only failed or canceled tasks): {b}" in partly.stderr

    assert_one_line_error(
        invoke("task", "retry", str(b)), 5, f"nothing retried: task {b} (pending)"
    )
    assert_one_line_error(invoke("task", "resume", str(b)), 5, "only paused or running tasks")
    assert_one_line_error(invoke("task", "cancel", str(a), "12345"), 4, "no task 12345")
    assert statuses(conn, [a]) == ["pending"]  # nothing was done
    assert_one_line_error(invoke("task", "cancel", "1-x"), 2, "invalid task id '1-x'")


def test_delete_asks_unless_yes(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    a, b = submit(conn, "x", {"command": "a"}, {"command": "b"})

    refused = invoke("task", "delete", str(a), input="n\n")
    assert refused.exit_code == 1
    assert statuses(conn, [a]) == ["pending"]

    confirmed = invoke("task", "delete", str(a), input="y\n")
    assert confirmed.exit_code == 0
    assert "deleted 1 task(s)" in confirmed.stdout
    forced = invoke("task", "delete", "--yes", str(b))
    assert forced.exit_code == 0
    assert statuses(conn, [a, b]) == ["deleted", "deleted"]


@pytest.mark.parametrize(
    "args",
    [["task", "list"], ["task", "show", "1"], ["batch", "list"], ["batch", "wait", "b"],
     ["worker", "list"], ["launch", "true"]],
)  # fmt: skip
def test_an_unreachable_database_is_one_line_with_exit_3(args: list[str]) -> None:
    url = "postgresql://scitq@127.0.0.1:1/scitq?connect_timeout=5"
    result = CliRunner().invoke(scitq, ["--database-url", url, *args])
    assert_one_line_error(result, 3, "cannot reach the database")
