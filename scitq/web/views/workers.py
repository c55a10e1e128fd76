"""Workers: configuration edited inline (concurrency, prefetch), pause, resume, drain,
delete, through the same `scitq.db.worker.worker_update` as ``scitq worker``; the
load cell of each row re-polls itself, and its host cell (metrics, a chart of the last
hour) too, more slowly."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request, url_for

from scitq.db.worker import worker_delete, worker_list, worker_metrics_recent, worker_update
from scitq.errors import InvalidArgument, NotFound, ScitqError
from scitq.web.db import get_conn
from scitq.web.hostchart import WINDOW_SECONDS, HostChart, host_charts
from scitq.web.htmx import render
from scitq.web.responses import acted, audit, refused

blueprint = Blueprint("workers", __name__, url_prefix="/workers")

#: Actions that set one flag of the worker: (field, value).
FLAGS: dict[str, tuple[str, bool]] = {
    "pause": ("is_paused", True),
    "resume": ("is_paused", False),
    "drain": ("is_draining", True),
    "undrain": ("is_draining", False),
}
#: The most a form may set (the database has no upper bound; a typo should not claim
#: a million tasks).
MAX_SLOTS = 10_000


def _overview(worker_id: int) -> dict[str, Any]:
    for row in worker_list(get_conn()):
        if row["worker_id"] == worker_id:
            return row
    raise NotFound(f"worker {worker_id} does not exist")


@blueprint.get("/")
def index() -> str:
    workers = worker_list(get_conn())
    charts = _charts()
    return render("workers/index.html", "workers/_table.html", workers=workers, charts=charts)


@blueprint.get("/<int:worker_id>/host")
def host(worker_id: int) -> str:
    """The host cell of one row: latest metrics and the last hour's chart."""
    charts = _charts(worker_id)
    return render_template("workers/_host.html", worker={"worker_id": worker_id}, charts=charts)


def _charts(worker_id: int | None = None) -> dict[int, HostChart]:
    return host_charts(worker_metrics_recent(get_conn(), WINDOW_SECONDS, worker_id))


@blueprint.get("/<int:worker_id>/load")
def load(worker_id: int) -> str:
    """The live cells of one row (state and load)."""
    try:
        worker = _overview(worker_id)
    except NotFound:
        return render_template("workers/_gone.html")
    return render_template("workers/_load.html", worker=worker)


def _slots(field: str) -> int | None:
    text = request.form.get(field, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > MAX_SLOTS:
        raise InvalidArgument(f"{field} must be a whole number from 0 to {MAX_SLOTS}, not {text!r}")
    return int(text)


@blueprint.post("/<int:worker_id>/<action>")
def act(worker_id: int, action: str) -> Any:
    back = url_for("workers.index")
    conn = get_conn()
    try:
        if action == "set":
            concurrency, prefetch = _slots("concurrency"), _slots("prefetch")
            if concurrency is None and prefetch is None:
                raise InvalidArgument("nothing to change: give a concurrency or a prefetch")
            row = worker_update(conn, worker_id, concurrency=concurrency, prefetch=prefetch)
            message = (
                f"worker {row['name']}: concurrency {row['concurrency']}, "
                f"prefetch {row['prefetch']} (applied at its next heartbeat)"
            )
        elif action in FLAGS:
            field, value = FLAGS[action]
            if field == "is_paused":
                row = worker_update(conn, worker_id, is_paused=value)
            else:
                row = worker_update(conn, worker_id, is_draining=value)
            message = f"worker {row['name']}: {action} done"
        elif action == "delete":
            name = _overview(worker_id)["name"]
            worker_delete(conn, worker_id)
            audit(action, f"worker {worker_id}")
            return acted(f"worker {name} deleted", back, lambda: "")
        else:
            abort(404)
    except ScitqError as error:
        return refused(error, back)
    audit(action, f"worker {worker_id}")
    return acted(
        message,
        back,
        lambda: render_template(
            "workers/_row.html", worker=_overview(worker_id), charts=_charts(worker_id)
        ),
    )
