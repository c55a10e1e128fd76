"""Tasks, their dependencies and the event log of their transitions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from scitq.db.model_base import NOW, TASK_STATUS, Base


class Batch(Base):
    """A named group of tasks; workers serve one or more batches."""

    __tablename__ = "batch"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    is_paused: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Free requeues of the tasks submitted to it without their own (NULL: 3).
    requeues: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint("name <> '' AND name !~ '[/[:cntrl:]]'", name="name"),
        CheckConstraint("requeues >= 0", name="requeues"),
    )


class BatchDuration(Base):
    """How long the attempts that succeeded in a batch took, from claim to end, and their
    commands alone (``wall_seconds``, the agent's measure): one row per worker, kept by
    ``execution_finish_v1`` so that ``scitq.batch_progress`` reads a few rows instead of
    joining executions to tasks, and the claim knows whether the worker's tasks are short
    (``task_short_on_worker``). Per worker, not per batch, so that the agents finishing
    tasks of one batch never wait for each other's row."""

    __tablename__ = "batch_duration"

    batch_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("batch.id", ondelete="CASCADE"), primary_key=True
    )
    worker_name: Mapped[str] = mapped_column(Text, primary_key=True)
    succeeded: Mapped[int] = mapped_column(BigInteger)
    total_seconds: Mapped[float] = mapped_column(Double)
    max_seconds: Mapped[float] = mapped_column(Double)
    run_total_seconds: Mapped[float] = mapped_column(Double, server_default=text("0"))
    run_max_seconds: Mapped[float] = mapped_column(Double, server_default=text("0"))


class Task(Base):
    """One shell command with its inputs, resources, output location and container."""

    __tablename__ = "task"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("batch.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(Text)
    command: Mapped[str] = mapped_column(Text)
    shell: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    container: Mapped[str | None] = mapped_column(Text)
    container_options: Mapped[str | None] = mapped_column(Text)
    inputs: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    resources: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    output: Mapped[str | None] = mapped_column(Text)
    retries: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: How many times the task may be requeued without spending a retry when its execution
    #: is lost or handed back (infrastructure trouble, not the task's own failure).
    requeues: Mapped[int] = mapped_column(Integer, server_default=text("3"))
    #: Free requeues used since the last manual retry.
    requeue_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    retry_delay_seconds: Mapped[float] = mapped_column(Double, server_default=text("10"))
    download_timeout_seconds: Mapped[float | None] = mapped_column(Double)
    run_timeout_seconds: Mapped[float | None] = mapped_column(Double)
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    env: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    status: Mapped[str] = mapped_column(TASK_STATUS)
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    #: A pending task is claimable from this time on (retry back-off).
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    #: Executions started so far (all attempts, kept for history).
    attempt_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: attempt_count when the retry budget was last reset by a manual retry.
    retry_floor: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    #: For a task canceled because a dependency failed: the task that failed.
    canceled_by_task_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    #: scitq v1's use_cache: an earlier success with the same cache key, the same input
    #: listing and its output still in place makes the task succeed without running.
    use_cache: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    #: For a task with use_cache: scitq.task_cache_key of what it runs (10_task.sql).
    cache_key: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("command <> ''", name="command"),
        CheckConstraint("retries >= 0", name="retries"),
        CheckConstraint("requeues >= 0", name="requeues"),
        CheckConstraint("retry_delay_seconds >= 0", name="retry_delay_seconds"),
        CheckConstraint(
            "download_timeout_seconds IS NULL OR download_timeout_seconds > 0",
            name="download_timeout_seconds",
        ),
        CheckConstraint(
            "run_timeout_seconds IS NULL OR run_timeout_seconds > 0", name="run_timeout_seconds"
        ),
        CheckConstraint("jsonb_typeof(env) = 'object'", name="env"),
        # The claim index: runnable tasks of one batch in claim order.
        Index(
            "task_claim_idx",
            "batch_id",
            text("priority DESC"),
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("task_batch_id_status_idx", "batch_id", "status"),
        Index("task_batch_id_name_idx", "batch_id", "name"),
        # listing filters across batches (scitq task list --status / --since)
        Index("task_status_idx", "status"),
        Index("task_created_at_idx", "created_at"),
        # retry and delete find the tasks canceled because of a given one
        Index(
            "task_canceled_by_task_id_idx",
            "canceled_by_task_id",
            postgresql_where=text("canceled_by_task_id IS NOT NULL"),
        ),
    )


class TaskDependency(Base):
    """``task_id`` runs only once ``depends_on_id`` has succeeded."""

    __tablename__ = "task_dependency"

    task_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("task.id", ondelete="CASCADE"), primary_key=True
    )
    depends_on_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("task.id", ondelete="CASCADE"), primary_key=True
    )

    __table_args__ = (
        CheckConstraint("task_id <> depends_on_id", name="not_self"),
        Index("task_dependency_depends_on_id_idx", "depends_on_id"),
    )


class BatchTaskCount(Base):
    """How many tasks of a batch are in each status: the sum of ``n`` over the slots,
    kept by the task triggers in the transaction of each change (10_task.sql), so that
    ``scitq.batch_progress`` and the dashboard read a few rows per batch whatever its
    size. A transaction writes the rows of its own backend (``slot`` = its pid), so that
    agents claiming and finishing tasks of one batch never wait for each other's row;
    ``scitq.batch_count_compact_v1`` folds them into slot 0."""

    __tablename__ = "batch_task_count"

    batch_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("batch.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(TASK_STATUS, primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class TaskEvent(Base):
    """Every status transition of a task, written by a trigger, and every edit of a task
    (``change`` set, from_status = to_status), written by task_update_v1.

    No foreign key to task: checking one per event doubles the cost of a bulk submit;
    task_delete_v1 deletes a task's events with it. Partitioned by time (``at``): events
    are written at the time they record and dropped by age (65_retention.sql).
    """

    __tablename__ = "task_event"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(BigInteger)
    from_status: Mapped[str | None] = mapped_column(TASK_STATUS)
    to_status: Mapped[str] = mapped_column(TASK_STATUS)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    #: An edit: {"by": role, "fields": {field: {"from": old, "to": new}}}; NULL for a
    #: status transition.
    change: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (
        Index("task_event_task_id_id_idx", "task_id", "id"),
        {"postgresql_partition_by": "RANGE (at)"},
    )
