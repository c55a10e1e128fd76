"""Host metrics carried by heartbeats: the bounded history, the view, and an agent role
that writes its own worker's samples only (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from scitq import errors
from scitq.db.worker import worker_heartbeat, worker_metrics_recent, worker_register

pytestmark = pytest.mark.sql

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SAMPLE = {
    "load1": 1.5, "cpu_percent": 40.0, "iowait_percent": 12.5,
    "memory_used_bytes": 2 * 2**30, "memory_total_bytes": 8 * 2**30,
    "disk_free_bytes": 50 * 2**20, "disk_total_bytes": 2**30, "disk_floor_bytes": 10 * 2**20,
    "disk_read_bytes_per_second": 1000.0, "disk_write_bytes_per_second": 2000.0,
    "network_receive_bytes_per_second": 30.0, "network_send_bytes_per_second": 40.0,
}  # fmt: skip


def _samples(conn: psycopg.Connection[Any], worker_id: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT at, cpu_percent, disk_free_bytes, is_low_disk FROM scitq.worker_metrics "
        "WHERE worker_id = %s ORDER BY at",
        (worker_id,),
    ).fetchall()


def test_a_heartbeat_records_its_metrics_in_the_view(conn: psycopg.Connection[Any]) -> None:
    worker = worker_register(conn, "w1")
    beat = worker_heartbeat(conn, worker["id"], now=T0, metrics=SAMPLE)
    assert beat["config_version"] == worker["config_version"]  # v1's answer, unchanged
    row = conn.execute(
        "SELECT worker_name, load1, iowait_percent, memory_total_bytes, disk_floor_bytes, "
        "is_low_disk, network_send_bytes_per_second FROM scitq.worker_metrics"
    ).fetchone()
    assert row == ("w1", 1.5, 12.5, 8 * 2**30, 10 * 2**20, False, 40.0)
    worker_heartbeat(conn, worker["id"], now=T0 + timedelta(seconds=30))  # no metrics
    assert len(_samples(conn, worker["id"])) == 1


def test_bad_figures_are_stored_as_null_not_refused(conn: psycopg.Connection[Any]) -> None:
    worker = worker_register(conn, "w1")
    bad = {**SAMPLE, "cpu_percent": -3, "load1": "high", "disk_free_bytes": None, "x": 1}
    worker_heartbeat(conn, worker["id"], now=T0, metrics=bad)
    assert _samples(conn, worker["id"]) == [(T0, None, None, False)]


def test_history_is_bounded_in_time_and_rate(conn: psycopg.Connection[Any]) -> None:
    worker = worker_register(conn, "w1")
    wid = worker["id"]
    worker_heartbeat(conn, wid, now=T0, metrics=SAMPLE)
    worker_heartbeat(conn, wid, now=T0 + timedelta(seconds=2), metrics=SAMPLE)  # too close
    assert len(_samples(conn, wid)) == 1
    # crossing the disk floor is kept however close: explain reads it
    low = {**SAMPLE, "disk_free_bytes": 5 * 2**20}
    worker_heartbeat(conn, wid, now=T0 + timedelta(seconds=3), metrics=low)
    assert [row[3] for row in _samples(conn, wid)] == [False, True]
    # a day later, the older samples go
    worker_heartbeat(conn, wid, now=T0 + timedelta(days=1, seconds=2), metrics=SAMPLE)
    assert [row[0] for row in _samples(conn, wid)] == [
        T0 + timedelta(seconds=3),
        T0 + timedelta(days=1, seconds=2),
    ]


def test_recent_metrics_per_worker(conn: psycopg.Connection[Any]) -> None:
    one, two = worker_register(conn, "w1"), worker_register(conn, "w2")
    for worker in (one, two):
        worker_heartbeat(conn, worker["id"], metrics=SAMPLE)  # now: within the hour
    worker_heartbeat(conn, one["id"], now=datetime.now(UTC) - timedelta(hours=2), metrics=SAMPLE)
    rows = worker_metrics_recent(conn, 3600.0)
    assert sorted(row["worker_name"] for row in rows) == ["w1", "w2"]
    assert [row["worker_name"] for row in worker_metrics_recent(conn, 3600.0, two["id"])] == ["w2"]


def test_an_agent_role_writes_only_its_own_workers_metrics(
    conn: psycopg.Connection[Any], make_role: Any
) -> None:
    _, dsn = make_role("scitq_agent")
    _, other_dsn = make_role("scitq_agent")
    with (
        psycopg.connect(dsn, autocommit=True) as mine,
        psycopg.connect(other_dsn, autocommit=True) as other,
    ):
        worker = worker_register(mine, "own")
        stranger = worker_register(other, "stranger")
        worker_heartbeat(mine, worker["id"], metrics=SAMPLE)
        with pytest.raises(errors.WorkerNotOwned):
            worker_heartbeat(mine, stranger["id"], metrics=SAMPLE)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mine.execute(
                "INSERT INTO scitq.worker_metric (worker_id, at) VALUES (%s, now())",
                (stranger["id"],),
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mine.execute(
                "SELECT scitq.worker_record_metrics(%s, '{}'::jsonb, now())", (stranger["id"],)
            )
    assert len(_samples(conn, worker["id"])) == 1
    assert _samples(conn, stranger["id"]) == []


def test_a_reader_sees_the_view_but_not_the_table(make_role: Any) -> None:
    _, dsn = make_role("scitq_reader")
    with psycopg.connect(dsn, autocommit=True) as reader:
        assert reader.execute("SELECT count(*) FROM scitq.worker_metrics").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("SELECT * FROM scitq.worker_metric")
