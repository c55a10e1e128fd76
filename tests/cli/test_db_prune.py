"""``scitq db prune``: partitions created ahead, old ones dropped, bad input refused."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_partitions import attempt, narrow, output_rows, partitions

pytestmark = pytest.mark.sql


def test_db_prune_drops_by_the_given_periods(invoke, conn):
    from scitq.db.worker import worker_register

    narrow(conn, 2)
    worker = worker_register(conn, "w1", concurrency=9, lease_seconds=3600)["id"]
    ok, failed, other = (attempt(conn, worker, 0, rc=rc) for rc in (0, 1, 0))  # ids 1, 2, 3
    newest = attempt(conn, worker, 0)  # 4: its range 4-5 is not complete
    listed = invoke("db", "prune", "--list", "--json")
    assert listed.exit_code == 0, listed.output
    names = {row["partition"] for row in json.loads(listed.output)}
    assert {"execution_output_e0", "execution_output_e2", "task_event_default"} <= names

    # nothing configured: nothing dropped (the attempts ended in 2020)
    kept = invoke("db", "prune")
    assert kept.exit_code == 0, kept.output
    assert output_rows(conn, ok) == 3

    result = invoke("db", "prune", "--succeeded-days", "30", "--failed-days", "90", "--json")
    assert result.exit_code == 0, result.output
    acted = {(row["partition"], row["action"]) for row in json.loads(result.output)}
    for name in ("e0_all", "e0", "e2_all", "e2"):
        assert (f"execution_output_{name}", "dropped") in acted
    rows = [output_rows(conn, e) for e in (ok, failed, other, newest)]
    assert rows == [0, 0, 0, 3]  # the failed attempt ended more than 90 days ago too
    assert "execution_output_e0" not in partitions(conn, "execution_output")
    assert conn.execute("SELECT count(*) FROM scitq.execution").fetchone()[0] == 4

    again = invoke("db", "prune", "--succeeded-days", "30", "--failed-days", "90")
    assert again.exit_code == 0 and "nothing to create or drop" in again.output


def test_db_prune_refuses_bad_periods(invoke):
    negative = invoke("db", "prune", "--succeeded-days", "-1")
    assert negative.exit_code == 2 and "-1" in negative.output
    both = invoke("db", "prune", "--keep-forever", "output", "--succeeded-days", "3")
    assert both.exit_code != 0
    assert "--keep-forever output contradicts" in both.output
