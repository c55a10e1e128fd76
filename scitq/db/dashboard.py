"""Typed wrappers over the named queries of ``queries/dashboard.sql``, and the dashboard's
task page (the two-phase keyset read of `scitq.client.Client.page`, on a connection the
web app owns).

Reads only, except the ``web_user_*`` writes, which call stored functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from scitq import sql
from scitq.client import PAGE_SCAN_BUDGET, TASK_STATUSES
from scitq.db import listing
from scitq.db.connection import translated
from scitq.db.listing import LogChunk, Task, from_row
from scitq.errors import InvalidArgument

Row = dict[str, Any]
Connection = psycopg.Connection[Any]


def _rows(conn: Connection, name: str, params: Mapping[str, Any]) -> list[Row]:
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.queries()[name], params, prepare=False)
        return cur.fetchall() if cur.description else []


# -- users --------------------------------------------------------------------------------


def web_user_get(conn: Connection, name: str) -> Row | None:
    """A user with its password hash, or None."""
    rows = _rows(conn, "web_user_get", {"name": name})
    return rows[0] if rows else None


def web_user_list(conn: Connection) -> list[Row]:
    return _rows(conn, "web_user_list", {})


def web_user_set(conn: Connection, name: str, password_hash: str, role: str) -> Row:
    """Create a user or replace its password and role; ``created`` says which."""
    params = {"name": name, "password_hash": password_hash, "role": role}
    return _rows(conn, "web_user_set", params)[0]


def web_user_record_login(conn: Connection, name: str) -> None:
    _rows(conn, "web_user_record_login", {"name": name})


def web_user_delete(conn: Connection, name: str) -> bool:
    return bool(_rows(conn, "web_user_delete", {"name": name})[0]["deleted"])


# -- tasks and output ---------------------------------------------------------------------


#: Task ids a name search looks through per request: the name has no index, and a
#: substring of it cannot use one, so a search goes through the ids window by window.
NAME_SCAN_BUDGET = 100_000


@dataclasses.dataclass(frozen=True, slots=True)
class TaskPage:
    """A page of tasks; ``searched_to`` is set when a name search stopped at that id
    before filling the page (ask again with ``after=searched_to`` to go on)."""

    tasks: list[Task]
    searched_to: int | None = None


def task_page(
    conn: Connection,
    *,
    limit: int,
    after: int | None = None,
    batch_id: int | None = None,
    statuses: Sequence[str] = (),
    name: str | None = None,
    worker: str | None = None,
) -> TaskPage:
    """One page of tasks in id order after ``after``, as `scitq.client.Client.page`.

    A filtered page first looks among the next ids only, then lets the filters' indexes
    find the rows (see the query ``task_list``), so that both dense and rare matches are
    fast on millions of tasks. A name pattern has no index: it is looked for in the next
    NAME_SCAN_BUDGET ids at most, and the page says where the search stopped.
    """
    unknown = sorted(set(statuses) - set(TASK_STATUSES))
    if unknown:
        raise InvalidArgument(f"unknown task status {', '.join(unknown)}")
    filters: dict[str, Any] = {
        "batch_id": batch_id, "statuses": list(statuses), "name": name, "worker": worker,
    }  # fmt: skip
    if not any(filters.values()):
        return TaskPage(listing.task_list(conn, limit=limit, after=after))
    if name is None or batch_id is not None:
        # indexed filters (a name within a batch uses task_batch_id_name_idx)
        window = listing.task_list(
            conn, limit=limit, after=after, scan_budget=PAGE_SCAN_BUDGET, **filters
        )
        if len(window) == limit:
            return TaskPage(window)
        return TaskPage(listing.task_list(conn, limit=limit, after=after, by_id=False, **filters))
    # a name alone: look through the next NAME_SCAN_BUDGET ids, bounds given as values
    searched = _rows(conn, "dashboard_task_window", {"after": after, "budget": NAME_SCAN_BUDGET})
    last_id, ids = searched[0]["last_id"], searched[0]["ids"]
    if last_id is None:
        return TaskPage([])
    params = {"after": after, "last_id": last_id, "name": name, "limit": limit,
              "statuses": list(statuses) or None, "worker": worker}  # fmt: skip
    found = [int(row["id"]) for row in _rows(conn, "dashboard_task_ids_by_name", params)]
    tasks = listing.task_list(conn, limit=limit, task_ids=found) if found else []
    if len(found) == limit or ids < NAME_SCAN_BUDGET:
        return TaskPage(tasks)  # a full page, or the window reached the last task
    return TaskPage(tasks, searched_to=int(last_id))


def execution_output_before(
    conn: Connection, execution_id: int, *, before_seq: int, limit: int
) -> list[LogChunk]:
    """Up to ``limit`` chunks just before ``before_seq``, oldest first."""
    params = {"execution_id": execution_id, "before_seq": before_seq, "limit": limit}
    return [from_row(LogChunk, row) for row in _rows(conn, "dashboard_output_before", params)]


def execution_throughput(
    conn: Connection, *, window_seconds: float, bucket_seconds: float
) -> list[Row]:
    """Attempts ended per bucket (``bucket``, ``succeeded``, ``failed``), oldest first."""
    params = {"window_seconds": window_seconds, "bucket_seconds": bucket_seconds}
    return _rows(conn, "dashboard_throughput", params)


# -- cloud --------------------------------------------------------------------------------


def recruiter_list(conn: Connection) -> list[Row]:
    return _rows(conn, "dashboard_recruiters", {})


def instance_list(conn: Connection, limit: int = 200) -> list[Row]:
    return _rows(conn, "dashboard_instances", {"limit": limit})


def cloud_operation_list(conn: Connection, limit: int = 50) -> list[Row]:
    return _rows(conn, "dashboard_cloud_operations", {"limit": limit})


def batch_counts(
    conn: Connection,
    batch: str | None = None,
    *,
    window_seconds: float = 3600.0,
    sample: int = 2000,
) -> list[Row]:
    """Rows of ``scitq.batch_progress`` (all batches, or one), fast on millions of tasks.

    ``mean_seconds`` and ``max_seconds`` cover only the newest ``sample`` attempts that
    succeeded in the last ``window_seconds``: the recent pace, not the whole history.
    """
    params = {"batch": batch, "window_seconds": window_seconds, "sample": sample}
    return _rows(conn, "dashboard_batches", params)
