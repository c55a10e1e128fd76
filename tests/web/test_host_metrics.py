"""The workers page's host cell: latest metrics and the last hour's chart (Flask client,
real PostgreSQL)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from scitq.db.worker import worker_heartbeat
from scitq.web.hostchart import HEIGHT, WIDTH, host_charts
from tests.cli.conftest import register
from tests.web.conftest import LoggedIn

SAMPLE = {
    "load1": 0.75, "cpu_percent": 50.0, "iowait_percent": 25.0,
    "memory_used_bytes": 3 * 2**30, "memory_total_bytes": 8 * 2**30,
    "disk_free_bytes": 5 * 2**20, "disk_total_bytes": 2**30, "disk_floor_bytes": 10 * 2**20,
    "disk_read_bytes_per_second": 0.0, "disk_write_bytes_per_second": 2.0 * 2**20,
    "network_receive_bytes_per_second": 1024.0, "network_send_bytes_per_second": 0.0,
}  # fmt: skip


def test_the_host_cell_shows_figures_a_chart_and_low_disk(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    worker = register(conn, "w1")
    bare = register(conn, "w2")
    now = datetime.now(UTC)
    for minutes in (50, 30, 10):
        at = now - timedelta(minutes=minutes)
        worker_heartbeat(conn, worker, now=at, metrics={**SAMPLE, "cpu_percent": 100 - minutes})
    page = admin.get("/workers/").get_data(as_text=True)
    cell = admin.get(f"/workers/{worker}/host", htmx=True).get_data(as_text=True)
    for html in (page, cell):
        assert "load 0.75" in html and "I/O wait 25%" in html and "CPU 90%" in html
        assert "memory 3.0 GiB of 8.0 GiB" in html
        assert "disk 5.0 MiB free of 1.0 GiB" in html and "write 2.0 MiB/s" in html
        assert 'class="badge low-disk"' in html
        cpu = re.search(r'<polyline class="cpu" points="([^"]+)"', html)
        assert cpu is not None and len(cpu[1].split()) == 3
    assert "no metrics yet" in admin.get(f"/workers/{bare}/host", htmx=True).get_data(as_text=True)


def test_chart_points_follow_time_and_percent() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    rows = [
        {"worker_id": 1, "at": now - timedelta(minutes=60), "cpu_percent": 0.0,
         "iowait_percent": None},
        {"worker_id": 1, "at": now, "cpu_percent": 100.0, "iowait_percent": 150.0},
    ]  # fmt: skip
    chart = host_charts(rows, now=now)[1]
    assert chart.samples == 2 and chart.latest is rows[-1]
    (x0, y0), (x1, y1) = (tuple(map(float, p.split(","))) for p in chart.cpu_points.split())
    assert (x0, x1) == (0.0, float(WIDTH))
    assert y0 == HEIGHT - 0.5 and y1 == 0.5  # 0 % at the bottom, 100 % at the top
    assert chart.iowait_points == f"{WIDTH:.1f},0.5"  # clamped to 100 %; a gap skipped
