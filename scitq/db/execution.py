"""Wrappers of the named queries about executions (``queries/execution.sql``).

The agent's reports (phases, output, results; run asynchronously with ``run_async`` or
together with `scitq.db.query.run_together`), the scheduler's duties on leases, timeouts
and old output, and the reads of an attempt and of its output.

Output is stored as UTF-8 text (`to_storable`): PostgreSQL text cannot hold NUL and must
be valid UTF-8, so every byte that is not valid UTF-8 is written ``\\xNN`` and NUL
``\\x00``; a literal backslash is left as it is, so the escaping is readable rather than
reversible. Nothing is ever dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from scitq.db.query import Params, count, named_query, nothing, optional_of, rows, rows_of
from scitq.db.rows import Execution, LogChunk


@named_query(nothing, prepare=False)
def pass_idle_limit(milliseconds: int) -> Params:
    """Limit the idle time of the current transaction (``SET LOCAL``): a report pass."""
    return {"milliseconds": milliseconds}


def to_storable(data: str | bytes) -> str:
    """Text that PostgreSQL accepts, with invalid bytes and NULs escaped."""
    text = data.decode("utf-8", errors="backslashreplace") if isinstance(data, bytes) else data
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    # lone surrogates (from a str built with surrogateescape) cannot be encoded either
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


# -- the agent's reports ------------------------------------------------------------------


@named_query(nothing)
def execution_set_phase(
    worker_id: int, execution_id: int, phase: str, now: datetime | None = None
) -> Params:
    return {"worker_id": worker_id, "execution_id": execution_id, "phase": phase, "now": now}


@named_query(count)
def execution_set_phases(
    worker_id: int, execution_ids: Sequence[int], phase: str, now: datetime | None = None
) -> Params:
    """Move many executions to ``phase`` (forward only); how many moved."""
    return {"worker_id": worker_id, "execution_ids": list(execution_ids), "phase": phase,
            "now": now}  # fmt: skip


@named_query(count)
def execution_append_output(
    worker_id: int,
    chunks: Sequence[tuple[int, int, str, str | bytes]],
    now: datetime | None = None,
) -> Params:
    """Append ``(execution_id, seq, stream, text)`` chunks in one round trip.

    Bytes that are not UTF-8 and NUL characters are stored escaped (see `to_storable`).
    """
    return {
        "worker_id": worker_id,
        "execution_ids": [chunk[0] for chunk in chunks],
        "seqs": [chunk[1] for chunk in chunks],
        "streams": [chunk[2] for chunk in chunks],
        "texts": [to_storable(chunk[3]) for chunk in chunks],
        "now": now,
    }


@named_query(rows)
def execution_finish(
    worker_id: int, results: Sequence[Mapping[str, Any]], now: datetime | None = None
) -> Params:
    """Finish executions (dicts with execution_id, return_code, ..., see execution_finish_v1)."""
    return {"worker_id": worker_id, "results": json.dumps(list(results)), "now": now}


@named_query(nothing)
def execution_record_cache(
    worker_id: int,
    execution_id: int,
    input_fingerprint: str,
    output_manifest: Mapping[str, int] | None,
    cached_from: int | None = None,
    now: datetime | None = None,
) -> Params:
    """use_cache: record what an execution listed and left (see execution_record_cache_v1)."""
    manifest = None if output_manifest is None else json.dumps(dict(output_manifest))
    return {"worker_id": worker_id, "execution_id": execution_id,
            "input_fingerprint": input_fingerprint, "output_manifest": manifest,
            "cached_from": cached_from, "now": now}  # fmt: skip


# -- the scheduler's duties ---------------------------------------------------------------


@named_query(rows)
def execution_expire_leases(now: datetime | None = None) -> Params:
    """Mark executions whose lease expired as lost (rows ``execution_id``, ``task_id``)."""
    return {"now": now}


@named_query(rows)
def execution_expiry_outcome(execution_ids: Iterable[int]) -> Params:
    return {"execution_ids": list(execution_ids)}


@named_query(rows)
def execution_overdue(
    grace_seconds: float, limit: int = 1000, now: datetime | None = None
) -> Params:
    """Live executions past their download or run timeout plus ``grace_seconds``."""
    return {"grace_seconds": grace_seconds, "limit": limit, "now": now}


@named_query(rows)
def execution_timeout(
    execution_ids: Iterable[int], reason: str = "timed out", now: datetime | None = None
) -> Params:
    return {"execution_ids": list(execution_ids), "reason": reason, "now": now}


@named_query(count)
def execution_output_prune(
    older_than_seconds: float, limit: int = 10000, now: datetime | None = None
) -> Params:
    return {"older_than_seconds": older_than_seconds, "limit": limit, "now": now}


# -- reads --------------------------------------------------------------------------------


@named_query(optional_of(Execution), prepare=False)
def execution_get(execution_id: int) -> Params:
    return {"execution_id": execution_id}


@named_query(rows_of(LogChunk), prepare=False)
def execution_output_read(
    execution_id: int, *, after_seq: int = -1, streams: Sequence[str] | None = None,
    limit: int = 1000,
) -> Params:  # fmt: skip
    """Up to ``limit`` output chunks with ``seq > after_seq``, in order."""
    return {"execution_id": execution_id, "after_seq": after_seq,
            "streams": None if not streams else list(streams), "limit": limit}  # fmt: skip


@named_query(rows_of(LogChunk), prepare=False)
def execution_output_tail(
    execution_id: int, *, limit: int, streams: Sequence[str] | None = None
) -> Params:
    """The last ``limit`` output chunks, oldest first."""
    return {"execution_id": execution_id, "streams": None if not streams else list(streams),
            "limit": limit}  # fmt: skip


@named_query(rows_of(LogChunk), prepare=False)
def execution_output_before(execution_id: int, *, before_seq: int, limit: int) -> Params:
    """Up to ``limit`` chunks just before ``before_seq``, oldest first."""
    return {"execution_id": execution_id, "before_seq": before_seq, "limit": limit}
