"""Wrappers of the named queries of partitions and retention (``queries/partition.sql``).

Execution output is partitioned by ranges of execution ids, the event log by time; the
scheduler's partitions duty and ``scitq db prune`` create partitions ahead and drop
whole partitions once the retention periods allow (docs/operations.md, "Retention").
"""

from __future__ import annotations

from datetime import datetime

from scitq.db.query import Params, named_query, rows


@named_query(rows)
def partition_ensure(
    output_width: int = 100_000,
    output_ahead: int = 4,
    event_days: int = 7,
    event_ahead: int = 2,
    now: datetime | None = None,
) -> Params:
    """Create the partitions writes will need; the rows are those created."""
    return {"output_width": output_width, "output_ahead": output_ahead,
            "event_days": event_days, "event_ahead": event_ahead, "now": now}  # fmt: skip


@named_query(rows)
def partition_prune(
    succeeded_days: float | None,
    failed_days: float | None,
    event_days: float | None,
    now: datetime | None = None,
) -> Params:
    """Drop the partitions the periods (None: forever) let go: (partition, action, rows)."""
    return {"succeeded_days": succeeded_days, "failed_days": failed_days,
            "event_days": event_days, "now": now}  # fmt: skip


@named_query(rows)
def partition_list() -> Params:
    """The partitions of execution output and events, with estimated rows and bytes."""
    return {}
