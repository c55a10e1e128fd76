"""The dashboard's own read queries agree with the reporting views they stand in for."""

from __future__ import annotations

from typing import Any

import psycopg

from scitq.db.batch import batch_pause
from scitq.db.report import batch_counts, batch_progress, execution_throughput
from scitq.db.task import task_cancel, task_pause
from tests.cli.conftest import claim, register, run_to_end, submit

COUNTS = ("batch_id", "batch", "is_paused", "total", "waiting", "pending", "assigned", "running",
          "succeeded", "failed", "paused", "canceled", "remaining")  # fmt: skip


def test_batch_counts_equal_the_batch_progress_view(conn: psycopg.Connection[Any]) -> None:
    ids = submit(conn, "a", *({"command": "true"} for _ in range(6)))
    submit(conn, "b", {"command": "true"}, {"command": "true", "depends_on": [ids[0]]})
    worker = register(conn, "w1", concurrency=10)
    claimed = claim(conn, worker, 3)
    run_to_end(conn, worker, claimed[0]["execution_id"])
    run_to_end(conn, worker, claimed[1]["execution_id"], return_code=1)
    task_pause(conn, [ids[4]])
    task_cancel(conn, [ids[5]])
    batch_pause(conn, "b")
    view = {row["batch"]: row for row in batch_progress(conn)}
    fast = {row["batch"]: row for row in batch_counts(conn)}
    assert set(view) == set(fast) == {"a", "b"}
    for name in view:
        assert {k: fast[name][k] for k in COUNTS} == {k: view[name][k] for k in COUNTS}
    assert fast["a"]["succeeded"] == 1 and fast["a"]["failed"] == 1
    assert fast["a"]["mean_seconds"] is not None  # the success is recent
    assert fast["b"]["mean_seconds"] is None
    [one] = batch_counts(conn, "b")
    assert one["batch"] == "b" and one["total"] == 2 and one["is_paused"] is True
    assert batch_counts(conn, "nope") == []
    # outside the window, no duration
    [old] = batch_counts(conn, "a", window_seconds=0.000001)
    assert old["mean_seconds"] is None and old["total"] == 6


def test_throughput_counts_recent_attempts_by_outcome(conn: psycopg.Connection[Any]) -> None:
    submit(conn, "a", *({"command": "true"} for _ in range(3)))
    worker = register(conn, "w1", concurrency=10)
    claimed = claim(conn, worker, 3)
    run_to_end(conn, worker, claimed[0]["execution_id"])
    run_to_end(conn, worker, claimed[1]["execution_id"])
    run_to_end(conn, worker, claimed[2]["execution_id"], return_code=2)
    rows = execution_throughput(conn, window_seconds=3600, bucket_seconds=60)
    assert sum(r["succeeded"] for r in rows) == 2
    assert sum(r["failed"] for r in rows) == 1
    assert all(r["bucket"].second == 0 for r in rows)
