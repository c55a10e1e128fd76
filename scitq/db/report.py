"""Wrappers of the named read queries of reporting (``queries/report.sql``): batch
counts, throughput, and the size of the schema."""

from __future__ import annotations

from scitq.db.query import Params, named_query, one_row, rows


@named_query(rows)
def batch_progress(batch: str | None = None) -> Params:
    """Rows of the view ``scitq.batch_progress`` (all batches, or one)."""
    return {"batch": batch}


@named_query(rows, prepare=False)
def batch_counts(
    batch: str | None = None, *, window_seconds: float = 3600.0, sample: int = 2000
) -> Params:
    """Rows of ``scitq.batch_progress`` (all batches, or one), fast on millions of tasks.

    ``mean_seconds`` and ``max_seconds`` cover only the newest ``sample`` attempts that
    succeeded in the last ``window_seconds``: the recent pace, not the whole history.
    """
    return {"batch": batch, "window_seconds": window_seconds, "sample": sample}


@named_query(rows, prepare=False)
def execution_throughput(*, window_seconds: float, bucket_seconds: float) -> Params:
    """Attempts ended per bucket (``bucket``, ``succeeded``, ``failed``), oldest first."""
    return {"window_seconds": window_seconds, "bucket_seconds": bucket_seconds}


@named_query(one_row)
def schema_counts() -> Params:
    """How many batches, tasks, executions and workers there are."""
    return {}
