"""Typed wrappers over the read-only named queries of ``queries/listing.sql``.

One function per query, of the same name, in the style of `scitq.db.queries`; rows of
tasks, executions and output come back as the frozen dataclasses below, which are also
the results of `scitq.Client`, and the facts of ``task_explain`` as an `Explanation`.
Queries run unprepared (``prepare=False``): their optional filters (``x IS NULL OR ...``)
must be planned with the actual values, which a cached generic plan would not do.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from scitq import sql
from scitq.db.connection import translated

Row = dict[str, Any]
Connection = psycopg.Connection[Any]

LIVE_EXECUTION_STATUSES = frozenset({"assigned", "downloading", "running", "uploading"})


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """A task with the summary of its last attempt (``last_execution_*``, ``worker_name``...)."""

    id: int
    batch: str
    name: str | None
    status: str
    command: str
    shell: bool
    container: str | None
    container_options: str | None
    inputs: tuple[str, ...]
    resources: tuple[str, ...]
    output: str | None
    retries: int
    retry_delay_seconds: float
    download_timeout_seconds: float | None
    run_timeout_seconds: float | None
    priority: int
    env: dict[str, str]
    tags: tuple[str, ...]
    depends_on: tuple[int, ...]
    attempt_count: int
    available_at: datetime
    cancel_reason: str | None
    canceled_by_task_id: int | None
    created_at: datetime
    status_changed_at: datetime
    last_execution_id: int | None
    last_execution_status: str | None
    worker_name: str | None
    return_code: int | None
    failure_class: str | None
    failure_reason: str | None
    wall_seconds: float | None
    peak_rss_bytes: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Execution:
    """One attempt of a task on one worker."""

    id: int
    task_id: int
    attempt: int
    status: str
    worker_name: str
    assigned_at: datetime
    download_started_at: datetime | None
    run_started_at: datetime | None
    upload_started_at: datetime | None
    finished_at: datetime | None
    lease_expires_at: datetime
    return_code: int | None
    failure_class: str | None
    failure_reason: str | None
    wall_seconds: float | None
    cpu_user_seconds: float | None
    cpu_system_seconds: float | None
    peak_rss_bytes: int | None
    bytes_in: int | None
    bytes_out: int | None

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_EXECUTION_STATUSES


@dataclasses.dataclass(frozen=True, slots=True)
class BatchProgress:
    """Task counts of a batch (the view ``scitq.batch_progress``)."""

    batch: str
    is_paused: bool
    total: int
    waiting: int
    pending: int
    assigned: int
    running: int
    succeeded: int
    failed: int
    paused: int
    canceled: int
    remaining: int
    mean_seconds: float | None
    max_seconds: float | None
    created_at: datetime

    @property
    def done(self) -> int:
        """Tasks that have ended (succeeded, failed or canceled)."""
        return self.total - self.remaining


@dataclasses.dataclass(frozen=True, slots=True)
class Dependency:
    id: int
    name: str | None
    batch: str
    status: str
    cancel_reason: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class LogChunk:
    """A piece of output; ``text`` usually ends with a newline."""

    execution_id: int
    seq: int
    stream: str
    at: datetime
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Explanation:
    """Why a task is (not) running: ``code`` names the main reason, ``details`` the others."""

    task_id: int
    status: str
    code: str
    message: str
    details: tuple[str, ...] = ()


def _timestamp(value: datetime | str | None) -> str:
    if value is None:
        return "never"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


_T = TypeVar("_T")


def from_row(cls: type[_T], row: Mapping[str, Any]) -> _T:
    """A result dataclass from a query row (lists become tuples)."""
    values = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = row[field.name]
        values[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def as_dict(result: Any) -> dict[str, Any]:
    """A result dataclass as a dict (for JSON)."""
    return dataclasses.asdict(result)


def _rows(conn: Connection, name: str, params: Mapping[str, Any]) -> list[Row]:
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.queries()[name], params, prepare=False)
        return cur.fetchall() if cur.description else []


def _first(conn: Connection, name: str, params: Mapping[str, Any]) -> Row | None:
    rows = _rows(conn, name, params)
    return rows[0] if rows else None


def task_list(
    conn: Connection,
    *,
    limit: int,
    after: int | None = None,
    task_ids: Sequence[int] | None = None,
    batch_id: int | None = None,
    statuses: Sequence[str] | None = None,
    name: str | None = None,
    since: datetime | None = None,
    worker: str | None = None,
    scan_budget: int | None = None,
    by_id: bool = True,
) -> list[Task]:
    """One page of tasks in id order after ``after`` (see the query for the filters).

    ``name`` is an ILIKE pattern; ``worker`` a worker name (any attempt).
    ``scan_budget`` looks only among that many ids after ``after``; ``by_id=False`` lets
    PostgreSQL find the rows through the filters' indexes and sort them (the two phases
    of `scitq.client.Client.page`).
    """
    upto = None
    if scan_budget is not None:
        window = _first(conn, "task_window_end", {"after": after, "scan_budget": scan_budget})
        upto = None if window is None else window["upto"]
        if upto is None:
            return []  # no task after `after`
    params = {
        "upto": upto,
        "by_id": by_id,
        "limit": limit,
        "after": after,
        "task_ids": None if task_ids is None else list(task_ids),
        "batch_id": batch_id,
        "statuses": None if not statuses else list(statuses),
        "name": name,
        "since": since,
        "worker": worker,
    }
    return [from_row(Task, row) for row in _rows(conn, "task_list", params)]


def task_statuses(conn: Connection, task_ids: Iterable[int]) -> list[Row]:
    return _rows(conn, "task_statuses", {"task_ids": list(task_ids)})


def task_dependencies(conn: Connection, task_id: int) -> list[Dependency]:
    rows = _rows(conn, "task_dependencies", {"task_id": task_id})
    return [from_row(Dependency, row) for row in rows]


def task_executions(conn: Connection, task_id: int) -> list[Execution]:
    """Every attempt of a task, oldest first."""
    rows = _rows(conn, "task_executions", {"task_id": task_id})
    return [from_row(Execution, row) for row in rows]


def execution_get(conn: Connection, execution_id: int) -> Execution | None:
    row = _first(conn, "execution_get", {"execution_id": execution_id})
    return None if row is None else from_row(Execution, row)


def execution_output_read(
    conn: Connection,
    execution_id: int,
    *,
    after_seq: int = -1,
    streams: Sequence[str] | None = None,
    limit: int = 1000,
) -> list[LogChunk]:
    """Up to ``limit`` output chunks with ``seq > after_seq``, in order."""
    params = {
        "execution_id": execution_id,
        "after_seq": after_seq,
        "streams": None if not streams else list(streams),
        "limit": limit,
    }
    return [from_row(LogChunk, row) for row in _rows(conn, "execution_output_read", params)]


def execution_output_tail(
    conn: Connection, execution_id: int, *, limit: int, streams: Sequence[str] | None = None
) -> list[LogChunk]:
    """The last ``limit`` output chunks, oldest first."""
    params = {
        "execution_id": execution_id,
        "streams": None if not streams else list(streams),
        "limit": limit,
    }
    return [from_row(LogChunk, row) for row in _rows(conn, "execution_output_tail", params)]


def batch_find(conn: Connection, batch: str) -> Row | None:
    return _first(conn, "batch_find", {"batch": batch})


def batch_execution_stats(conn: Connection, batch: str) -> Row | None:
    return _first(conn, "batch_execution_stats", {"batch": batch})


def batch_workers(conn: Connection, batch: str) -> list[Row]:
    return _rows(conn, "batch_workers", {"batch": batch})


def worker_list(conn: Connection) -> list[Row]:
    return _rows(conn, "worker_list", {})


def worker_find(conn: Connection, ref: str) -> Row | None:
    """A worker by name, or by id when ``ref`` is a number and no worker has that name."""
    # at most 18 digits: always a bigint
    worker_id = int(ref) if re.fullmatch(r"[0-9]{1,18}", ref) else None
    return _first(conn, "worker_find", {"name": ref, "worker_id": worker_id})


def task_explain(conn: Connection, task_id: int) -> Explanation | None:
    """Why a task is (not) running, from the facts the query gathers."""
    facts = _first(conn, "task_explain", {"task_id": task_id})
    return None if facts is None else explain(facts)


# -- explanations -------------------------------------------------------------------------


def _attempt_outcome(facts: Mapping[str, Any]) -> str:
    outcome = facts["failure_class"] or facts["execution_status"]
    if facts["return_code"] is not None:
        outcome = f"{outcome}, exit code {facts['return_code']}"
    if facts["failure_reason"]:
        outcome = f"{outcome}: {facts['failure_reason']}"
    return f"attempt {facts['attempt']} on {facts['worker_name']} ended ({outcome})"


def _worker_state(worker: Mapping[str, Any]) -> str | None:
    """Why a worker claims nothing now, or None if it has a free slot."""
    if worker["liveness"] != "online":
        heartbeat = _timestamp(worker["last_heartbeat_at"])
        return f"{worker['name']} is {worker['liveness']} (last heartbeat {heartbeat})"
    if worker["is_paused"]:
        return f"{worker['name']} is paused"
    if worker["is_draining"]:
        return f"{worker['name']} is draining"
    if worker["live"] >= worker["slots"]:
        return f"{worker['name']} is full ({worker['live']} of {worker['slots']} slots)"
    return None


def _explain_pending(facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What holds a pending task back; ``runnable`` when nothing does."""
    batch, workers = facts["batch"], facts["workers"]
    reasons = []
    if facts["available_at"] > facts["now"]:
        after = f" after {_attempt_outcome(facts)}" if facts["execution_id"] else ""
        until = _timestamp(facts["available_at"])
        reasons.append(("backoff", f"it is in retry back-off until {until}{after}"))
    if facts["batch_is_paused"]:
        resume = f"`scitq batch resume {batch}` resumes it"
        reasons.append(("batch_paused", f"batch {batch!r} is paused; {resume}"))
    states = [_worker_state(worker) for worker in workers]
    busy = ", ".join(state for state in states if state is not None)
    if not workers:
        start = f"start one with `scitq agent --batch {batch}`"
        reasons.append(("no_worker", f"no worker serves batch {batch!r}; {start}"))
    elif all(worker["liveness"] != "online" for worker in workers):
        reasons.append(("no_live_worker", f"no live worker serves batch {batch!r}: {busy}"))
    elif None not in states:
        reasons.append(("workers_busy", f"every worker serving batch {batch!r} is busy: {busy}"))
    if reasons:
        return reasons
    free = ", ".join(
        f"{worker['name']} ({worker['slots'] - worker['live']} free)"
        for worker, state in zip(workers, states, strict=True)
        if state is None
    )
    ahead = "10000+" if facts["ahead"] >= 10000 else str(facts["ahead"])
    queue = f"{ahead} runnable tasks of the batch come before it"
    return [
        ("runnable", f"it is runnable and should be claimed soon: free slots on {free}; {queue}")
    ]


def explain(facts: Mapping[str, Any]) -> Explanation:
    """The explanation of a task from the row of the ``task_explain`` query."""
    task_id, status = facts["id"], facts["status"]
    since = _timestamp(facts["status_changed_at"])
    if status == "pending":
        reasons = _explain_pending(facts)
    elif status == "waiting":
        deps = ", ".join(
            f"task {dep['id']}{' ' + repr(dep['name']) if dep['name'] else ''} ({dep['status']})"
            for dep in facts["unmet_dependencies"]
        )
        reasons = [("dependency", f"it waits for {deps or 'its dependencies'}")]
    elif status == "paused":
        reasons = [("paused", f"it was paused at {since}; `scitq task resume {task_id}`")]
    elif status == "canceled":
        hint = f"`scitq task retry {task_id}` restores it"
        if facts["canceled_by_task_id"] is not None:
            hint += f" and retries task {facts['canceled_by_task_id']}"
        reasons = [("canceled", f"{facts['cancel_reason'] or 'canceled'} ({since}); {hint}")]
    elif status in ("assigned", "running"):
        verb = "is assigned to" if status == "assigned" else "runs on"
        started = _timestamp(facts["run_started_at"] or facts["assigned_at"])
        phase = f"attempt {facts['attempt']}, {facts['execution_status']} since {started}"
        reasons = [(status, f"it {verb} worker {facts['worker_name']} ({phase})")]
    else:  # succeeded or failed
        message = _attempt_outcome(facts) if facts["execution_id"] else status
        if status == "failed":
            message += f"; no retry left: `scitq task retry {task_id}`"
        reasons = [(status, message)]
    (code, message), *others = reasons
    return Explanation(task_id, status, code, message, tuple(text for _, text in others))
