"""The commands around a real `scitq agent`: launch, wait, show, log and list what it ran."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.cli.conftest import Invoke

pytestmark = pytest.mark.sql


def test_launched_tasks_run_and_their_output_and_history_are_shown(
    invoke: Invoke, start_agent: Callable[..., Any]
) -> None:
    exec_id = invoke("launch", "-b", "real", "-n", "words", "--",
                     "printf", "%s\\n", "two words", "it's")  # fmt: skip
    shell_id = invoke("launch", "-b", "real", "-R", "words", "--shell",
                      "echo out; echo err >&2; exit 3")  # fmt: skip
    assert exec_id.exit_code == 0 and shell_id.exit_code == 0, exec_id.output + shell_id.output
    first, second = int(exec_id.stdout), int(shell_id.stdout)

    agent = start_agent("-b", "real", "-c", "2", "--drain")
    waited = invoke("batch", "wait", "real", "--interval", "0.2", "--timeout", "120", "--json")
    assert agent.wait(timeout=60) == 0, agent.log()

    assert waited.exit_code == 8, waited.output  # the shell task failed
    assert json.loads(waited.stdout)["succeeded"] == 1

    log = invoke("task", "log", str(first))
    assert log.stdout == "two words\nit's\n"  # printf got each word intact
    failed = invoke("task", "log", str(second))
    assert (failed.stdout, "err\n" in failed.stderr) == ("out\n", True)

    shown = json.loads(invoke("task", "show", str(second), "--json").stdout)
    assert shown["status"] == "failed"
    assert [(e["status"], e["return_code"]) for e in shown["executions"]] == [("failed", 3)]
    assert shown["executions"][0]["worker_name"] == agent.name

    on_worker = json.loads(invoke("task", "list", "-w", agent.name, "--json").stdout)
    assert [task["id"] for task in on_worker] == [first, second]
    explained = json.loads(invoke("task", "explain", str(second), "--json").stdout)
    assert explained["code"] == "failed"
    assert "exit code 3" in explained["message"]
