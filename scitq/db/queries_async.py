"""Asynchronous twins of the agent's named queries (see `scitq.db.queries`).

Only the agent protocol has twins; a unit test keeps their names and parameters in step
with the synchronous wrappers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from scitq import sql
from scitq.db.connection import translate_error
from scitq.db.output_text import to_storable

Row = dict[str, Any]
AsyncConnection = psycopg.AsyncConnection[Any]


async def _rows(conn: AsyncConnection, name: str, params: Mapping[str, Any]) -> list[Row]:
    try:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.queries()[name], params)
            return await cur.fetchall() if cur.description else []
    except psycopg.Error as exc:
        raise translate_error(exc) from exc


async def worker_register(
    conn: AsyncConnection,
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
    return (await _rows(conn, "worker_register", params))[0]


async def worker_heartbeat(
    conn: AsyncConnection,
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
    return (await _rows(conn, "worker_heartbeat", params))[0]


async def worker_stop(conn: AsyncConnection, worker_id: int, now: datetime | None = None) -> int:
    rows = await _rows(conn, "worker_stop", {"worker_id": worker_id, "now": now})
    return int(rows[0]["count"])


async def task_claim(
    conn: AsyncConnection, worker_id: int, limit: int, now: datetime | None = None
) -> list[Row]:
    return await _rows(conn, "task_claim", {"worker_id": worker_id, "limit": limit, "now": now})


async def execution_set_phase(
    conn: AsyncConnection,
    worker_id: int,
    execution_id: int,
    phase: str,
    now: datetime | None = None,
) -> None:
    params = {"worker_id": worker_id, "execution_id": execution_id, "phase": phase, "now": now}
    await _rows(conn, "execution_set_phase", params)


async def execution_set_phases(
    conn: AsyncConnection,
    worker_id: int,
    execution_ids: Sequence[int],
    phase: str,
    now: datetime | None = None,
) -> int:
    params = {
        "worker_id": worker_id,
        "execution_ids": list(execution_ids),
        "phase": phase,
        "now": now,
    }
    return int((await _rows(conn, "execution_set_phases", params))[0]["count"])


async def execution_append_output(
    conn: AsyncConnection,
    worker_id: int,
    chunks: Sequence[tuple[int, int, str, str | bytes]],
    now: datetime | None = None,
) -> int:
    params = {
        "worker_id": worker_id,
        "execution_ids": [chunk[0] for chunk in chunks],
        "seqs": [chunk[1] for chunk in chunks],
        "streams": [chunk[2] for chunk in chunks],
        "texts": [to_storable(chunk[3]) for chunk in chunks],
        "now": now,
    }
    return int((await _rows(conn, "execution_append_output", params))[0]["count"])


async def execution_finish(
    conn: AsyncConnection,
    worker_id: int,
    results: Sequence[Mapping[str, Any]],
    now: datetime | None = None,
) -> list[Row]:
    params = {"worker_id": worker_id, "results": json.dumps(list(results)), "now": now}
    return await _rows(conn, "execution_finish", params)
