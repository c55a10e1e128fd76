"""Wrappers of the named queries about workers (``queries/worker.sql``): the agent
protocol (register, heartbeat, stop; run asynchronously with ``run_async``), worker
administration, the scheduler's liveness tracking, and the reads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from scitq.db.query import (
    Connection,
    Params,
    count,
    named_query,
    nothing,
    one_row,
    optional_row,
    rows,
)


@named_query(one_row)
def worker_register(
    name: str,
    *,
    hostname: str | None = None,
    batches: Sequence[str] | None = None,
    concurrency: int | None = None,
    prefetch: int | None = None,
    cpu_count: int | None = None,
    lease_seconds: float | None = None,
    now: datetime | None = None,
) -> Params:
    """Register a worker or resume the row of the same name (see worker_register_v1)."""
    return {
        "name": name,
        "hostname": hostname,
        "batches": None if batches is None else list(batches),
        "concurrency": concurrency,
        "prefetch": prefetch,
        "cpu_count": cpu_count,
        "lease_seconds": lease_seconds,
        "now": now,
    }


@named_query(one_row)
def worker_heartbeat(
    worker_id: int,
    execution_ids: Iterable[int] = (),
    acked_signal_ids: Iterable[int] = (),
    now: datetime | None = None,
    metrics: Mapping[str, float | int | None] | None = None,
) -> Params:
    """Renew the leases of a worker's executions (and record its host ``metrics``, if
    given: `scitq.agent.metrics`); returns its signals and settings."""
    return {
        "worker_id": worker_id,
        "execution_ids": list(execution_ids),
        "acked_signal_ids": list(acked_signal_ids),
        "now": now,
        "metrics": None if metrics is None else json.dumps(dict(metrics)),
    }


@named_query(count)
def worker_stop(worker_id: int, now: datetime | None = None) -> Params:
    return {"worker_id": worker_id, "now": now}


@named_query(one_row)
def worker_update(
    worker_id: int,
    *,
    concurrency: int | None = None,
    prefetch: int | None = None,
    batches: Sequence[str] | None = None,
    is_paused: bool | None = None,
    is_draining: bool | None = None,
    is_permanent: bool | None = None,
) -> Params:
    """Change some settings of a worker (those not given are kept)."""
    return {
        "worker_id": worker_id,
        "concurrency": concurrency,
        "prefetch": prefetch,
        "batches": None if batches is None else list(batches),
        "is_paused": is_paused,
        "is_draining": is_draining,
        "is_permanent": is_permanent,
    }


@named_query(nothing)
def worker_delete(worker_id: int, now: datetime | None = None) -> Params:
    return {"worker_id": worker_id, "now": now}


def password_verifier(conn: Connection, role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of a password, computed on the client side."""
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    return verifier.decode()


@named_query(one_row)
def worker_create_role(
    worker_name: str, role: str, password_hash: str, batches: Iterable[str] | None = None
) -> Params:
    """Create a login role bound to one worker, with a verifier of `password_verifier`:
    it may register that worker only, serving only ``batches`` (None: any batch)."""
    return {
        "worker_name": worker_name, "role": role, "password_hash": password_hash,
        "batches": None if batches is None else list(batches),
    }  # fmt: skip


@named_query(one_row)
def worker_role_set_batches(role: str, batches: Iterable[str] | None) -> Params:
    """Fix the batches a role made for one worker may ever serve (None: any)."""
    return {"role": role, "batches": None if batches is None else list(batches)}


@named_query(rows)
def worker_track_liveness(scheduler: str | None = None, now: datetime | None = None) -> Params:
    """Record every worker whose liveness changed since the last call."""
    return {"scheduler": scheduler, "now": now}


@named_query(rows, prepare=False)
def worker_list() -> Params:
    """Rows of ``scitq.worker_overview``."""
    return {}


@named_query(optional_row, prepare=False)
def worker_find(ref: str) -> Params:
    """A worker by name, or by id when ``ref`` is a number and no worker has that name."""
    # at most 18 digits: always a bigint
    worker_id = int(ref) if re.fullmatch(r"[0-9]{1,18}", ref) else None
    return {"name": ref, "worker_id": worker_id}


@named_query(optional_row, prepare=False)
def worker_liveness(name: str) -> Params:
    """The liveness and host of the worker called ``name`` (None: no such worker)."""
    return {"name": name}


@named_query(rows, prepare=False)
def worker_metrics_recent(seconds: float = 3600.0, worker_id: int | None = None) -> Params:
    """Rows of ``scitq.worker_metrics`` of the last ``seconds``, per worker, oldest first."""
    return {"seconds": seconds, "worker_id": worker_id}
