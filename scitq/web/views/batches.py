"""Batches: progress per batch (rows that re-poll themselves until the batch is done)
and the batch actions of ``scitq batch``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, render_template, request, url_for

from scitq.db.batch import batch_cancel, batch_delete, batch_pause, batch_resume, batch_retry
from scitq.db.report import batch_counts
from scitq.errors import NotFound, ScitqError
from scitq.web.db import get_conn, get_report_conn
from scitq.web.htmx import render
from scitq.web.responses import DONE, acted, audit, go_to, local_referrer, refused

blueprint = Blueprint("batches", __name__, url_prefix="/batches")

ACTIONS: dict[str, Callable[[Any, str], Any]] = {
    "pause": batch_pause,
    "resume": batch_resume,
    "retry": batch_retry,
    "cancel": batch_cancel,
    "delete": batch_delete,
}


def _progress(batch: str) -> dict[str, Any]:
    rows = batch_counts(get_report_conn(), batch)
    if not rows:
        raise NotFound(f"batch {batch!r} does not exist")
    return rows[0]


@blueprint.get("/")
def index() -> str:
    batches = batch_counts(get_report_conn())
    return render("batches/index.html", "batches/_table.html", batches=batches)


@blueprint.get("/<name>/row")
def row(name: str) -> str:
    """One batch's row: re-polled by itself while tasks remain."""
    try:
        batch = _progress(name)
    except NotFound:
        return ""  # deleted meanwhile: the row goes away
    return render_template("batches/_row.html", batch=batch)


@blueprint.post("/<name>/<action>")
def act(name: str, action: str) -> Any:
    if action not in ACTIONS:
        abort(404)
    back = local_referrer(url_for("batches.index"))
    try:
        result = ACTIONS[action](get_conn(), name)
    except ScitqError as error:
        return refused(error, back)
    audit(action, f"batch {name}")
    counted = f" ({result} tasks)" if isinstance(result, int) else ""
    message = f"batch {name} {DONE[action]}{counted}"
    if action == "delete":
        if request.headers.get("HX-Target", "").startswith("batch-"):
            return acted(message, back, lambda: "")  # the row is swapped out
        return go_to(url_for("batches.index"), message)
    return acted(message, back, lambda: render_template("batches/_row.html", batch=_progress(name)))
