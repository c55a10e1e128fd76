"""`scitq batch show --json` on a batch whose executions moved bytes (numeric sums)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.cli.conftest import Invoke, claim, register, run_to_end, submit

pytestmark = pytest.mark.sql


def test_show_json_with_transfers(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    submit(conn, "moved", {"command": "a"}, {"command": "b"})
    worker = register(conn, "w1", batches=["moved"], concurrency=2)
    for claimed in claim(conn, worker, 2):
        run_to_end(conn, worker, claimed["execution_id"], wall_seconds=1.5,
                   bytes_in=3 * 2**40, bytes_out=7, cpu_user_seconds=0.25)  # fmt: skip
    result = invoke("batch", "show", "moved", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    stats = shown["executions"]
    assert stats["bytes_in"] == 6 * 2**40 and isinstance(stats["bytes_in"], int)
    assert stats["bytes_out"] == 14
    assert stats["cpu_user_seconds"] == 0.5
    assert shown["succeeded"] == 2
