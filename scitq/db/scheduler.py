"""Wrappers of the named queries of the scheduler (``queries/scheduler.sql``): its
advisory lock and its decision log."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from scitq.db.query import Params, count, named_query, optional_row, rows, scalar


@named_query(scalar("locked", bool))
def scheduler_lock_try(key: int) -> Params:
    """Take the scheduler's session-level advisory lock if free; True when taken."""
    return {"key": key}


@named_query(scalar("released", bool))
def scheduler_lock_release(key: int) -> Params:
    return {"key": key}


@named_query(optional_row)
def scheduler_lock_holder(key: int) -> Params:
    """The ``pid`` and ``application_name`` of the session holding the lock, if any."""
    return {"key": key}


@named_query(scalar("held", bool))
def scheduler_lock_held(key: int, pid: int) -> Params:
    """Whether the session of backend ``pid`` holds the lock."""
    return {"key": key, "pid": pid}


@named_query(count)
def scheduler_record(
    duty: str,
    decisions: Sequence[Mapping[str, Any]],
    scheduler: str | None = None,
    now: datetime | None = None,
) -> Params:
    """Record decisions (dicts: decision, subject_kind, subject_id, reason, details)."""
    return {
        "duty": duty,
        "decisions": json.dumps(list(decisions), default=str),
        "scheduler": scheduler,
        "now": now,
    }


@named_query(count)
def scheduler_decision_prune(
    older_than_seconds: float, limit: int = 10000, now: datetime | None = None
) -> Params:
    return {"older_than_seconds": older_than_seconds, "limit": limit, "now": now}


@named_query(rows)
def scheduler_log(duty: str | None = None, limit: int = 100) -> Params:
    """The latest decisions, newest first."""
    return {"duty": duty, "limit": limit}
