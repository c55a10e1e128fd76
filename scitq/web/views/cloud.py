"""Recruiters, instances and cloud operations, as their tables hold them; operations
in progress re-poll until none is pending or running."""

from __future__ import annotations

from flask import Blueprint

from scitq.db import dashboard
from scitq.states import LIVE_CLOUD_OPERATION_STATUSES
from scitq.web.db import get_conn
from scitq.web.htmx import render

blueprint = Blueprint("cloud", __name__, url_prefix="/cloud")

ACTIVE_OPERATIONS = LIVE_CLOUD_OPERATION_STATUSES


@blueprint.get("/")
def index() -> str:
    conn = get_conn()
    operations = dashboard.cloud_operation_list(conn)
    return render(
        "cloud/index.html",
        "cloud/_operations.html",
        recruiters=dashboard.recruiter_list(conn),
        instances=dashboard.instance_list(conn),
        operations=operations,
        active=any(op["status"] in ACTIVE_OPERATIONS for op in operations),
    )
