"""Typed wrappers over the named queries of cloud recruitment (``queries/recruitment.sql``).

One function per query, of the same name, as in `scitq.db.queries`; arguments are bound,
never interpolated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from scitq import sql
from scitq.db.connection import translated

Row = dict[str, Any]
Connection = psycopg.Connection[Any]


def _rows(conn: Connection, name: str, params: Mapping[str, Any]) -> list[Row]:
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.queries()[name], params)
        return cur.fetchall() if cur.description else []


def recruiter_set(
    conn: Connection,
    batch: str,
    provider: str,
    max_workers: int,
    *,
    flavor: str | None = None,
    image: str | None = None,
    region: str | None = None,
    concurrency: int = 1,
    prefetch: int = 0,
    min_workers: int = 0,
    tasks_per_worker: int = 1,
    rank: int = 1,
) -> Row:
    """Create the recruiter of (batch, rank) or replace its fields."""
    params = {"batch": batch, "provider": provider, "max_workers": max_workers,
              "flavor": flavor, "image": image, "region": region, "concurrency": concurrency,
              "prefetch": prefetch, "min_workers": min_workers,
              "tasks_per_worker": tasks_per_worker, "rank": rank}  # fmt: skip
    return _rows(conn, "recruiter_set", params)[0]


def recruiter_update(conn: Connection, recruiter_id: int, **fields: Any) -> Row:
    """Change some fields of a recruiter (those not given are kept)."""
    names = ("provider", "max_workers", "flavor", "image", "region", "concurrency",
             "prefetch", "min_workers", "tasks_per_worker")  # fmt: skip
    unknown = set(fields) - set(names)
    if unknown:
        raise TypeError(f"unknown recruiter fields: {sorted(unknown)}")
    params = {name: fields.get(name) for name in names}
    return _rows(conn, "recruiter_update", {"recruiter_id": recruiter_id, **params})[0]


def recruiter_delete(conn: Connection, recruiter_id: int) -> None:
    _rows(conn, "recruiter_delete", {"recruiter_id": recruiter_id})


def recruiter_list(conn: Connection, batch: str | None = None) -> list[Row]:
    return _rows(conn, "recruiter_list", {"batch": batch})


def recruiter_find(
    conn: Connection, recruiter_id: int | None = None, batch: str | None = None, rank: int = 1
) -> Row | None:
    rows = _rows(
        conn, "recruiter_find", {"recruiter_id": recruiter_id, "batch": batch, "rank": rank}
    )
    return rows[0] if rows else None


def recruiter_decisions(conn: Connection, recruiter_id: int, limit: int = 20) -> list[Row]:
    return _rows(conn, "recruiter_decisions", {"recruiter_id": recruiter_id, "limit": limit})


def instance_request(
    conn: Connection,
    provider: str,
    batch: str,
    count: int = 1,
    *,
    concurrency: int = 1,
    prefetch: int = 0,
    flavor: str | None = None,
    image: str | None = None,
    region: str | None = None,
    recruiter_id: int | None = None,
    is_permanent: bool = False,
    name_prefix: str = "scitq",
    now: datetime | None = None,
) -> list[Row]:
    """Ask for instances: rows ``instance_id``, ``operation_id``, ``name``."""
    params = {"provider": provider, "batch": batch, "count": count, "concurrency": concurrency,
              "prefetch": prefetch, "flavor": flavor, "image": image, "region": region,
              "recruiter_id": recruiter_id, "is_permanent": is_permanent,
              "name_prefix": name_prefix, "now": now}  # fmt: skip
    return _rows(conn, "instance_request", params)


def instance_release(
    conn: Connection, instance_id: int, reason: str, now: datetime | None = None
) -> int | None:
    """Queue the destruction of an instance; the destroy operation's id, if one is needed."""
    params = {"instance_id": instance_id, "reason": reason, "now": now}
    value = _rows(conn, "instance_release", params)[0]["operation_id"]
    return None if value is None else int(value)


def instance_reassign(conn: Connection, instance_id: int, recruiter_id: int) -> Row:
    return _rows(
        conn, "instance_reassign", {"instance_id": instance_id, "recruiter_id": recruiter_id}
    )[0]


def instance_link_workers(conn: Connection, now: datetime | None = None) -> list[Row]:
    return _rows(conn, "instance_link_workers", {"now": now})


def instance_list(conn: Connection, include_deleted: bool = False) -> list[Row]:
    return _rows(conn, "instance_list", {"all": include_deleted})


def cloud_operation_claim(conn: Connection, limit: int, now: datetime | None = None) -> list[Row]:
    return _rows(conn, "cloud_operation_claim", {"limit": limit, "now": now})


def cloud_operation_progress(
    conn: Connection,
    operation_id: int,
    message: str | None = None,
    progress: int | None = None,
    provider_ref: str | None = None,
    worker_id: int | None = None,
    now: datetime | None = None,
) -> None:
    params = {"operation_id": operation_id, "message": message, "progress": progress,
              "provider_ref": provider_ref, "worker_id": worker_id, "now": now}  # fmt: skip
    _rows(conn, "cloud_operation_progress", params)


def cloud_operation_finish(
    conn: Connection,
    operation_id: int,
    error_class: str | None = None,
    error: str | None = None,
    retry_after_seconds: float | None = None,
    now: datetime | None = None,
) -> Row:
    params = {"operation_id": operation_id, "error_class": error_class, "error": error,
              "retry_after_seconds": retry_after_seconds, "now": now}  # fmt: skip
    return _rows(conn, "cloud_operation_finish", params)[0]


def cloud_operation_abandon(
    conn: Connection, operation_ids: Sequence[int], reason: str, now: datetime | None = None
) -> list[Row]:
    params = {"operation_ids": list(operation_ids), "reason": reason, "now": now}
    return _rows(conn, "cloud_operation_abandon", params)


def cloud_operation_running(conn: Connection, now: datetime | None = None) -> list[Row]:
    return _rows(conn, "cloud_operation_running", {"now": now})


def cloud_operation_list(
    conn: Connection, include_old: bool = False, limit: int = 100
) -> list[Row]:
    return _rows(conn, "cloud_operation_list", {"all": include_old, "limit": limit})


def recruit_state(conn: Connection, now: datetime | None = None) -> list[Row]:
    return _rows(conn, "recruit_state", {"now": now})


def recruit_reusable(
    conn: Connection, provider: str, flavor: str | None, limit: int, now: datetime | None = None
) -> list[Row]:
    params = {"provider": provider, "flavor": flavor, "limit": limit, "now": now}
    return _rows(conn, "recruit_reusable", params)


def recruit_releasable(
    conn: Connection, grace_seconds: float, boot_seconds: float, now: datetime | None = None
) -> list[Row]:
    params = {"grace_seconds": grace_seconds, "boot_seconds": boot_seconds, "now": now}
    return _rows(conn, "recruit_releasable", params)


def instance_refs(conn: Connection, provider: str) -> list[Row]:
    return _rows(conn, "instance_refs", {"provider": provider})


def as_json(value: Any) -> str:
    return json.dumps(value, default=str)
