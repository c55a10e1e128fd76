"""Recruiters, instances and cloud operations, as their tables hold them; operations
in progress re-poll until none is pending or running."""

from __future__ import annotations

from flask import Blueprint

from scitq.db.recruitment import cloud_operation_list, instance_list, recruiter_list
from scitq.states import LIVE_CLOUD_OPERATION_STATUSES
from scitq.web.db import get_conn
from scitq.web.htmx import render

blueprint = Blueprint("cloud", __name__, url_prefix="/cloud")

ACTIVE_OPERATIONS = LIVE_CLOUD_OPERATION_STATUSES
#: Deleted instances stay listed for a day; the newest instances and operations only.
DELETED_SHOWN_SECONDS = 86400.0
INSTANCES_SHOWN = 200
OPERATIONS_SHOWN = 50
#: The end of each operation's log that the page holds.
LOG_CHARS = 2000


@blueprint.get("/")
def index() -> str:
    conn = get_conn()
    operations = cloud_operation_list(
        conn, include_old=True, limit=OPERATIONS_SHOWN, log_chars=LOG_CHARS
    )
    instances = instance_list(
        conn, deleted_within_seconds=DELETED_SHOWN_SECONDS, limit=INSTANCES_SHOWN
    )
    return render(
        "cloud/index.html",
        "cloud/_operations.html",
        recruiters=recruiter_list(conn),
        instances=instances[::-1],  # newest first
        operations=operations,
        active=any(op["status"] in ACTIVE_OPERATIONS for op in operations),
    )
