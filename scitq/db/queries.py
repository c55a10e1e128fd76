"""Typed wrappers over the named queries: one function per query, of the same name.

This module (with the agent's asynchronous twin) is the only reader of
`scitq.sql.queries()`. Each wrapper calls one stored function; arguments are bound,
never interpolated. ``now`` is for tests and administrators: agents' calls act at the
server's time whatever they pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from scitq import errors, sql
from scitq.db.connection import translated
from scitq.db.output_text import to_storable

Row = dict[str, Any]
Connection = psycopg.Connection[Any]


def _rows(conn: Connection, name: str, params: Mapping[str, Any]) -> list[Row]:
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.queries()[name], params)
        return cur.fetchall() if cur.description else []


def _one(conn: Connection, name: str, params: Mapping[str, Any]) -> Row:
    rows = _rows(conn, name, params)
    return rows[0]


def task_submit(
    conn: Connection, batch: str, tasks: Sequence[Mapping[str, Any]], now: datetime | None = None
) -> list[Row]:
    """Submit tasks (dicts of task fields, see task_submit_v1) to a batch."""
    try:
        return _rows(
            conn, "task_submit", {"batch": batch, "tasks": json.dumps(list(tasks)), "now": now}
        )
    except errors.InvalidArgument as exc:
        # PostgreSQL refuses NUL and lone surrogates while parsing the JSON, before the
        # function can name the field: find it here (only on this error path)
        raise _unstorable_text(tasks) or exc from exc


def _unstorable_text(tasks: Sequence[Mapping[str, Any]]) -> errors.InvalidArgument | None:
    """An error naming the first task field with text PostgreSQL cannot store, if any."""

    def texts(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            for key, item in value.items():
                yield from texts(key)
                yield from texts(item)
        elif isinstance(value, list | tuple):
            for item in value:
                yield from texts(item)

    for position, task in enumerate(tasks, start=1):
        for field, value in task.items():
            for text in texts(value):
                if "\x00" in text:
                    return errors.InvalidArgument(
                        f"task #{position}: {field} contains a NUL character"
                    )
                try:
                    text.encode()
                except UnicodeEncodeError:
                    return errors.InvalidArgument(
                        f"task #{position}: {field} is not valid UTF-8 text"
                    )
    return None


def task_pause(conn: Connection, task_ids: Iterable[int], now: datetime | None = None) -> list[Row]:
    return _rows(conn, "task_pause", {"task_ids": list(task_ids), "now": now})


def task_resume(
    conn: Connection, task_ids: Iterable[int], now: datetime | None = None
) -> list[Row]:
    return _rows(conn, "task_resume", {"task_ids": list(task_ids), "now": now})


def task_cancel(
    conn: Connection,
    task_ids: Iterable[int],
    reason: str = "canceled by user",
    now: datetime | None = None,
) -> list[Row]:
    return _rows(conn, "task_cancel", {"task_ids": list(task_ids), "reason": reason, "now": now})


def task_retry(conn: Connection, task_ids: Iterable[int], now: datetime | None = None) -> list[Row]:
    return _rows(conn, "task_retry", {"task_ids": list(task_ids), "now": now})


def task_delete(conn: Connection, task_ids: Iterable[int], now: datetime | None = None) -> int:
    return int(_one(conn, "task_delete", {"task_ids": list(task_ids), "now": now})["count"])


def task_signal(
    conn: Connection, task_ids: Iterable[int], kind: str, now: datetime | None = None
) -> int:
    params = {"task_ids": list(task_ids), "kind": kind, "now": now}
    return int(_one(conn, "task_signal", params)["count"])


def batch_pause(conn: Connection, batch: str, now: datetime | None = None) -> None:
    _rows(conn, "batch_pause", {"batch": batch, "now": now})


def batch_resume(conn: Connection, batch: str, now: datetime | None = None) -> None:
    _rows(conn, "batch_resume", {"batch": batch, "now": now})


def batch_signal(conn: Connection, batch: str, kind: str, now: datetime | None = None) -> int:
    return int(_one(conn, "batch_signal", {"batch": batch, "kind": kind, "now": now})["count"])


def batch_cancel(
    conn: Connection,
    batch: str,
    reason: str = "batch canceled by user",
    now: datetime | None = None,
) -> int:
    params = {"batch": batch, "reason": reason, "now": now}
    return int(_one(conn, "batch_cancel", params)["count"])


def batch_retry(conn: Connection, batch: str, now: datetime | None = None) -> int:
    return int(_one(conn, "batch_retry", {"batch": batch, "now": now})["count"])


def batch_delete(conn: Connection, batch: str, now: datetime | None = None) -> int:
    return int(_one(conn, "batch_delete", {"batch": batch, "now": now})["count"])


def execution_expire_leases(conn: Connection, now: datetime | None = None) -> list[Row]:
    return _rows(conn, "execution_expire_leases", {"now": now})


def worker_register(
    conn: Connection,
    name: str,
    *,
    hostname: str | None = None,
    batches: Sequence[str] | None = None,
    concurrency: int | None = None,
    prefetch: int | None = None,
    cpu_count: int | None = None,
    lease_seconds: float | None = None,
    now: datetime | None = None,
) -> Row:
    """Register a worker or resume the row of the same name (see worker_register_v1)."""
    params = {
        "name": name,
        "hostname": hostname,
        "batches": None if batches is None else list(batches),
        "concurrency": concurrency,
        "prefetch": prefetch,
        "cpu_count": cpu_count,
        "lease_seconds": lease_seconds,
        "now": now,
    }
    return _one(conn, "worker_register", params)


def worker_heartbeat(
    conn: Connection,
    worker_id: int,
    execution_ids: Iterable[int] = (),
    acked_signal_ids: Iterable[int] = (),
    now: datetime | None = None,
) -> Row:
    params = {
        "worker_id": worker_id,
        "execution_ids": list(execution_ids),
        "acked_signal_ids": list(acked_signal_ids),
        "now": now,
    }
    return _one(conn, "worker_heartbeat", params)


def worker_stop(conn: Connection, worker_id: int, now: datetime | None = None) -> int:
    return int(_one(conn, "worker_stop", {"worker_id": worker_id, "now": now})["count"])


def worker_update(
    conn: Connection,
    worker_id: int,
    *,
    concurrency: int | None = None,
    prefetch: int | None = None,
    batches: Sequence[str] | None = None,
    is_paused: bool | None = None,
    is_draining: bool | None = None,
    is_permanent: bool | None = None,
) -> Row:
    params = {
        "worker_id": worker_id,
        "concurrency": concurrency,
        "prefetch": prefetch,
        "batches": None if batches is None else list(batches),
        "is_paused": is_paused,
        "is_draining": is_draining,
        "is_permanent": is_permanent,
    }
    return _one(conn, "worker_update", params)


def worker_delete(conn: Connection, worker_id: int, now: datetime | None = None) -> None:
    _rows(conn, "worker_delete", {"worker_id": worker_id, "now": now})


def worker_create_role(conn: Connection, worker_name: str, role: str, password: str) -> Row:
    """Create a login role for one worker; the password is hashed on the client side."""
    verifier = conn.pgconn.encrypt_password(
        password.encode(), role.encode(), b"scram-sha-256"
    ).decode()
    params = {"worker_name": worker_name, "role": role, "password_hash": verifier}
    return _one(conn, "worker_create_role", params)


def task_claim(
    conn: Connection, worker_id: int, limit: int, now: datetime | None = None
) -> list[Row]:
    return _rows(conn, "task_claim", {"worker_id": worker_id, "limit": limit, "now": now})


def execution_set_phase(
    conn: Connection, worker_id: int, execution_id: int, phase: str, now: datetime | None = None
) -> None:
    params = {"worker_id": worker_id, "execution_id": execution_id, "phase": phase, "now": now}
    _rows(conn, "execution_set_phase", params)


def execution_set_phases(
    conn: Connection,
    worker_id: int,
    execution_ids: Sequence[int],
    phase: str,
    now: datetime | None = None,
) -> int:
    """Move many executions to ``phase`` (forward only); how many moved."""
    params = {
        "worker_id": worker_id,
        "execution_ids": list(execution_ids),
        "phase": phase,
        "now": now,
    }
    return int(_rows(conn, "execution_set_phases", params)[0]["count"])


def execution_append_output(
    conn: Connection,
    worker_id: int,
    chunks: Sequence[tuple[int, int, str, str | bytes]],
    now: datetime | None = None,
) -> int:
    """Append ``(execution_id, seq, stream, text)`` chunks in one round trip.

    Bytes that are not UTF-8 and NUL characters are stored escaped (see `to_storable`).
    """
    params = {
        "worker_id": worker_id,
        "execution_ids": [chunk[0] for chunk in chunks],
        "seqs": [chunk[1] for chunk in chunks],
        "streams": [chunk[2] for chunk in chunks],
        "texts": [to_storable(chunk[3]) for chunk in chunks],
        "now": now,
    }
    return int(_one(conn, "execution_append_output", params)["count"])


def execution_finish(
    conn: Connection,
    worker_id: int,
    results: Sequence[Mapping[str, Any]],
    now: datetime | None = None,
) -> list[Row]:
    """Finish executions (dicts with execution_id, return_code, ..., see execution_finish_v1)."""
    params = {"worker_id": worker_id, "results": json.dumps(list(results)), "now": now}
    return _rows(conn, "execution_finish", params)


def batch_progress(conn: Connection, batch: str | None = None) -> list[Row]:
    return _rows(conn, "batch_progress", {"batch": batch})


def task_get(conn: Connection, task_id: int) -> Row | None:
    rows = _rows(conn, "task_get", {"task_id": task_id})
    return rows[0] if rows else None


def schema_counts(conn: Connection) -> Row:
    return _one(conn, "schema_counts", {})


# -- scheduler ----------------------------------------------------------------------------


def scheduler_lock_try(conn: Connection, key: int) -> bool:
    """Take the scheduler's session-level advisory lock if free; True when taken."""
    return bool(_one(conn, "scheduler_lock_try", {"key": key})["locked"])


def scheduler_lock_release(conn: Connection, key: int) -> bool:
    return bool(_one(conn, "scheduler_lock_release", {"key": key})["released"])


def scheduler_lock_holder(conn: Connection, key: int) -> Row | None:
    """The ``pid`` and ``application_name`` of the session holding the lock, if any."""
    rows = _rows(conn, "scheduler_lock_holder", {"key": key})
    return rows[0] if rows else None


def scheduler_lock_held(conn: Connection, key: int, pid: int) -> bool:
    """Whether the session of backend ``pid`` holds the lock."""
    return bool(_one(conn, "scheduler_lock_held", {"key": key, "pid": pid})["held"])


def scheduler_record(
    conn: Connection,
    duty: str,
    decisions: Sequence[Mapping[str, Any]],
    scheduler: str | None = None,
    now: datetime | None = None,
) -> int:
    """Record decisions (dicts: decision, subject_kind, subject_id, reason, details)."""
    params = {
        "duty": duty,
        "decisions": json.dumps(list(decisions), default=str),
        "scheduler": scheduler,
        "now": now,
    }
    return int(_one(conn, "scheduler_record", params)["count"])


def execution_expiry_outcome(conn: Connection, execution_ids: Iterable[int]) -> list[Row]:
    return _rows(conn, "execution_expiry_outcome", {"execution_ids": list(execution_ids)})


def execution_overdue(
    conn: Connection, grace_seconds: float, limit: int = 1000, now: datetime | None = None
) -> list[Row]:
    """Live executions past their download or run timeout plus ``grace_seconds``."""
    params = {"grace_seconds": grace_seconds, "limit": limit, "now": now}
    return _rows(conn, "execution_overdue", params)


def execution_timeout(
    conn: Connection,
    execution_ids: Iterable[int],
    reason: str = "timed out",
    now: datetime | None = None,
) -> list[Row]:
    params = {"execution_ids": list(execution_ids), "reason": reason, "now": now}
    return _rows(conn, "execution_timeout", params)


def worker_track_liveness(
    conn: Connection, scheduler: str | None = None, now: datetime | None = None
) -> list[Row]:
    return _rows(conn, "worker_track_liveness", {"scheduler": scheduler, "now": now})


def execution_output_prune(
    conn: Connection, older_than_seconds: float, limit: int = 10000, now: datetime | None = None
) -> int:
    params = {"older_than_seconds": older_than_seconds, "limit": limit, "now": now}
    return int(_one(conn, "execution_output_prune", params)["count"])


def scheduler_decision_prune(
    conn: Connection, older_than_seconds: float, limit: int = 10000, now: datetime | None = None
) -> int:
    params = {"older_than_seconds": older_than_seconds, "limit": limit, "now": now}
    return int(_one(conn, "scheduler_decision_prune", params)["count"])


def scheduler_log(conn: Connection, duty: str | None = None, limit: int = 100) -> list[Row]:
    """The latest decisions, newest first."""
    return _rows(conn, "scheduler_log", {"duty": duty, "limit": limit})
