"""Wrappers of the named queries of cloud recruitment (``queries/recruitment.sql``):
recruiters, instances, cloud operations, and what the recruit duty reads to decide."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from scitq.db.query import (
    Params,
    named_query,
    nothing,
    one_row,
    optional_row,
    optional_scalar,
    rows,
)

#: The fields of a recruiter that `recruiter_update` may change.
RECRUITER_FIELDS = ("provider", "max_workers", "flavor", "image", "region", "concurrency",
                    "prefetch", "min_workers", "tasks_per_worker")  # fmt: skip


# -- recruiters ---------------------------------------------------------------------------


@named_query(one_row)
def recruiter_set(
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
) -> Params:
    """Create the recruiter of (batch, rank) or replace its fields."""
    return {"batch": batch, "provider": provider, "max_workers": max_workers,
            "flavor": flavor, "image": image, "region": region, "concurrency": concurrency,
            "prefetch": prefetch, "min_workers": min_workers,
            "tasks_per_worker": tasks_per_worker, "rank": rank}  # fmt: skip


@named_query(one_row)
def recruiter_update(recruiter_id: int, **fields: Any) -> Params:
    """Change some fields of a recruiter (those not given are kept)."""
    unknown = set(fields) - set(RECRUITER_FIELDS)
    if unknown:
        raise TypeError(f"unknown recruiter fields: {sorted(unknown)}")
    return {"recruiter_id": recruiter_id, **{name: fields.get(name) for name in RECRUITER_FIELDS}}


@named_query(nothing)
def recruiter_delete(recruiter_id: int) -> Params:
    return {"recruiter_id": recruiter_id}


@named_query(rows, prepare=False)
def recruiter_list(batch: str | None = None) -> Params:
    """Recruiters (``scitq.recruiter_overview``, with ``workers``), in (batch, rank) order."""
    return {"batch": batch}


@named_query(optional_row, prepare=False)
def recruiter_find(
    recruiter_id: int | None = None, batch: str | None = None, rank: int = 1
) -> Params:
    """One recruiter by id, or by batch and rank."""
    return {"recruiter_id": recruiter_id, "batch": batch, "rank": rank}


@named_query(rows)
def recruiter_decisions(recruiter_id: int, limit: int = 20) -> Params:
    """The latest decisions about a recruiter, newest first."""
    return {"recruiter_id": recruiter_id, "limit": limit}


# -- instances ----------------------------------------------------------------------------


@named_query(rows)
def instance_request(
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
) -> Params:
    """Ask for instances: rows ``instance_id``, ``operation_id``, ``name``."""
    return {"provider": provider, "batch": batch, "count": count, "concurrency": concurrency,
            "prefetch": prefetch, "flavor": flavor, "image": image, "region": region,
            "recruiter_id": recruiter_id, "is_permanent": is_permanent,
            "name_prefix": name_prefix, "now": now}  # fmt: skip


@named_query(optional_scalar("operation_id", int))
def instance_release(instance_id: int, reason: str, now: datetime | None = None) -> Params:
    """Queue the destruction of an instance; the destroy operation's id, if one is needed."""
    return {"instance_id": instance_id, "reason": reason, "now": now}


@named_query(one_row)
def instance_reassign(instance_id: int, recruiter_id: int) -> Params:
    return {"instance_id": instance_id, "recruiter_id": recruiter_id}


@named_query(rows)
def instance_link_workers(now: datetime | None = None) -> Params:
    return {"now": now}


@named_query(rows, prepare=False)
def instance_list(
    include_deleted: bool = False,
    *,
    deleted_within_seconds: float | None = None,
    limit: int | None = None,
) -> Params:
    """Instances (``scitq.instance_overview`` with ``worker_name``) in id order.

    The live ones; the deleted ones too with ``include_deleted``, or those deleted in the
    last ``deleted_within_seconds``; the newest ``limit`` only when a limit is given.
    """
    return {"all": include_deleted, "deleted_within_seconds": deleted_within_seconds,
            "limit": limit}  # fmt: skip


@named_query(rows)
def instance_refs(provider: str) -> Params:
    """What the database knows of a provider's instances (to find orphans)."""
    return {"provider": provider}


# -- cloud operations ---------------------------------------------------------------------


@named_query(rows)
def cloud_operation_claim(limit: int, now: datetime | None = None) -> Params:
    return {"limit": limit, "now": now}


@named_query(nothing)
def cloud_operation_progress(
    operation_id: int,
    message: str | None = None,
    progress: int | None = None,
    provider_ref: str | None = None,
    worker_id: int | None = None,
    now: datetime | None = None,
) -> Params:
    return {"operation_id": operation_id, "message": message, "progress": progress,
            "provider_ref": provider_ref, "worker_id": worker_id, "now": now}  # fmt: skip


@named_query(one_row)
def cloud_operation_finish(
    operation_id: int,
    error_class: str | None = None,
    error: str | None = None,
    retry_after_seconds: float | None = None,
    now: datetime | None = None,
) -> Params:
    return {"operation_id": operation_id, "error_class": error_class, "error": error,
            "retry_after_seconds": retry_after_seconds, "now": now}  # fmt: skip


@named_query(rows)
def cloud_operation_abandon(
    operation_ids: Sequence[int], reason: str, now: datetime | None = None
) -> Params:
    return {"operation_ids": list(operation_ids), "reason": reason, "now": now}


@named_query(rows)
def cloud_operation_running(now: datetime | None = None) -> Params:
    """Operations marked running, with how long ago they were last updated."""
    return {"now": now}


@named_query(rows, prepare=False)
def cloud_operation_list(
    include_old: bool = False, limit: int = 100, *, log_chars: int | None = None
) -> Params:
    """Cloud operations, newest first: unfinished and of the last day, or all.

    ``log`` holds the whole log, or its last ``log_chars`` characters.
    """
    return {"all": include_old, "limit": limit, "log_chars": log_chars}


# -- what the recruit duty reads ----------------------------------------------------------


@named_query(rows)
def recruit_state(now: datetime | None = None) -> Params:
    """What the recruit duty weighs for each recruiter, in (batch, rank) order."""
    return {"now": now}


@named_query(rows)
def recruit_reusable(
    provider: str, flavor: str | None, limit: int, now: datetime | None = None
) -> Params:
    """Idle instances of a provider that may serve another batch."""
    return {"provider": provider, "flavor": flavor, "limit": limit, "now": now}


@named_query(rows)
def recruit_releasable(
    grace_seconds: float, boot_seconds: float, now: datetime | None = None
) -> Params:
    """Instances that may be destroyed, with why."""
    return {"grace_seconds": grace_seconds, "boot_seconds": boot_seconds, "now": now}
