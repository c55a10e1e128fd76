"""The typed rows that reads return: tasks, executions, batch progress, output.

Frozen dataclasses built from query rows by `from_row`; they are also the results of
`scitq.Client` and what the CLI, the web app and workflows show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from scitq.states import LIVE_EXECUTION_STATUSES


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
    #: every attempt so far (executions), kept for history
    attempt_count: int
    #: attempts that counted against ``retries`` since the last manual retry
    attempts_used: int
    #: free requeues allowed: executions lost or handed back that spend no retry
    requeues: int
    #: free requeues used since the last manual retry
    requeue_count: int
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
    #: scitq v1's use_cache
    use_cache: bool = False
    #: the last attempt was a cache hit: the earlier execution whose output it reused
    cached_from_execution_id: int | None = None


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
    #: a cache hit (use_cache): the earlier succeeded execution whose output it reused
    cached_from_execution_id: int | None = None

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_EXECUTION_STATUSES


@dataclasses.dataclass(frozen=True, slots=True)
class BatchProgress:
    """Task counts of a batch (the view ``scitq.batch_progress``).

    ``counts`` maps every status that has tasks to their number, so that a status added
    to `scitq.states` shows up there without a change here; the fields per status are
    kept for the code written against them, and ``remaining`` counts the live statuses.
    """

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
    counts: dict[str, int] = dataclasses.field(default_factory=dict)

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


_T = TypeVar("_T")


def from_row(cls: type[_T], row: Mapping[str, Any]) -> _T:
    """A result dataclass from a query row (lists become tuples)."""
    values = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name not in row and field.default is not dataclasses.MISSING:
            continue  # a column added later, absent from older reads
        value = row[field.name]
        values[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def as_dict(result: Any) -> dict[str, Any]:
    """A result dataclass as a dict (for JSON)."""
    return dataclasses.asdict(result)


@dataclasses.dataclass(frozen=True, slots=True)
class TaskPage:
    """A page of tasks; ``searched_to`` is set when a name search stopped at that id
    before filling the page (ask again with ``after=searched_to`` to go on)."""

    tasks: list[Task]
    searched_to: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Submitted:
    """A task as `scitq.Client.submit_many` returns it."""

    id: int
    name: str | None
    status: str


@dataclasses.dataclass(frozen=True, slots=True)
class Deployed:
    """A worker asked for with `scitq.Client.deploy`: its instance and deploy operation."""

    instance_id: int
    operation_id: int
    name: str
