"""Wrappers of the named queries about batches (``queries/batch.sql``): their state
changes, which call stored functions, and their reads."""

from __future__ import annotations

from datetime import datetime

from scitq.db.query import Params, count, named_query, nothing, optional_row, rows


@named_query(nothing)
def batch_pause(batch: str, now: datetime | None = None) -> Params:
    return {"batch": batch, "now": now}


@named_query(nothing)
def batch_resume(batch: str, now: datetime | None = None) -> Params:
    return {"batch": batch, "now": now}


@named_query(count)
def batch_signal(batch: str, kind: str, now: datetime | None = None) -> Params:
    """Signal every live execution of a batch; how many were signaled."""
    return {"batch": batch, "kind": kind, "now": now}


@named_query(count)
def batch_cancel(
    batch: str, reason: str = "batch canceled by user", now: datetime | None = None
) -> Params:
    return {"batch": batch, "reason": reason, "now": now}


@named_query(count)
def batch_retry(batch: str, now: datetime | None = None) -> Params:
    return {"batch": batch, "now": now}


@named_query(count)
def batch_delete(batch: str, now: datetime | None = None) -> Params:
    return {"batch": batch, "now": now}


@named_query(count)
def batch_set_requeues(batch: str, requeues: int) -> Params:
    """Free requeues of the batch's tasks, and of those submitted to it later without their
    own; how many tasks changed."""
    return {"batch": batch, "requeues": requeues}


@named_query(optional_row, prepare=False)
def batch_find(batch: str) -> Params:
    """The batch row (``id``, ``name``, ``is_paused``...) of that name, or None."""
    return {"batch": batch}


@named_query(optional_row, prepare=False)
def batch_execution_stats(batch: str) -> Params:
    """The row of ``scitq.execution_stats`` of a batch, or None."""
    return {"batch": batch}


@named_query(rows, prepare=False)
def batch_workers(batch: str) -> Params:
    """Rows of ``scitq.worker_overview`` of the workers that serve a batch."""
    return {"batch": batch}


@named_query(count)
def batch_count_compact() -> Params:
    """Fold the per-backend rows of the batch counters; how many rows were folded."""
    return {}
