"""The overview: batches with their progress, workers with their load, throughput."""

from __future__ import annotations

from flask import Blueprint

from scitq.db.report import batch_counts, execution_throughput
from scitq.db.worker import worker_list
from scitq.web.chart import throughput_chart
from scitq.web.db import get_report_conn
from scitq.web.htmx import render

blueprint = Blueprint("overview", __name__)

#: The chart shows the last hour, one bar per minute.
WINDOW_SECONDS = 3600.0
BUCKET_SECONDS = 60.0


@blueprint.get("/")
def index() -> str:
    """The full page, or (htmx, every few seconds) its live part."""
    conn = get_report_conn()
    batches = batch_counts(conn)
    rows = execution_throughput(conn, window_seconds=WINDOW_SECONDS, bucket_seconds=BUCKET_SECONDS)
    chart = throughput_chart(rows, window_seconds=WINDOW_SECONDS, bucket_seconds=BUCKET_SECONDS)
    return render(
        "overview/index.html",
        "overview/_live.html",
        batches=batches,
        workers=worker_list(conn),
        chart=chart,
    )
