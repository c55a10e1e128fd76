"""Tables of schema ``scitq``, declared once.

These SQLAlchemy models drive Alembic's autogenerate and serve read-only queries (web,
reporting). Writes that change a state never go through them: they call the stored
functions of ``scitq/sql/functions``.
"""

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
    SmallInteger,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

# SCHEMA and metadata are re-exported: Alembic and the schema tools take them from here
from scitq.db.model_base import (
    CLOUD_OPERATION_KIND,
    CLOUD_OPERATION_STATUS,
    EXECUTION_STATUS,
    FAILURE_CLASS,
    INSTANCE_STATUS,
    NOW,
    OUTPUT_STREAM,
    SIGNAL_KIND,
    TASK_STATUS,
    WORKER_STATUS,
    Base,
)
from scitq.db.model_base import (
    SCHEMA as SCHEMA,
)
from scitq.db.model_base import (
    metadata as metadata,
)


class Batch(Base):
    """A named group of tasks; workers serve one or more batches."""

    __tablename__ = "batch"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    is_paused: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("name <> '' AND name !~ '[/[:cntrl:]]'", name="name"),)


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

    __table_args__ = (
        CheckConstraint("command <> ''", name="command"),
        CheckConstraint("retries >= 0", name="retries"),
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


class TaskEvent(Base):
    """Every status transition of a task, written by a trigger.

    No foreign key to task: checking one per event doubles the cost of a bulk submit;
    task_delete_v1 deletes a task's events with it.
    """

    __tablename__ = "task_event"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_id: Mapped[int] = mapped_column(BigInteger)
    from_status: Mapped[str | None] = mapped_column(TASK_STATUS)
    to_status: Mapped[str] = mapped_column(TASK_STATUS)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("task_event_task_id_id_idx", "task_id", "id"),)


class Worker(Base):
    """A registered agent instance."""

    __tablename__ = "worker"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    hostname: Mapped[str | None] = mapped_column(Text)
    #: The database role (session_user) allowed to act for this worker.
    login_role: Mapped[str] = mapped_column(Text)
    #: Batch names served; empty means every batch.
    batches: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    concurrency: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    prefetch: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    is_paused: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    is_draining: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    #: Never destroyed by the scheduler when idle.
    is_permanent: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    lease_seconds: Mapped[float] = mapped_column(Double, server_default=text("60"))
    status: Mapped[str] = mapped_column(WORKER_STATUS, server_default=text("'online'"))
    #: Incremented by every configuration change, so a heartbeat can tell what changed.
    config_version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    cpu_count: Mapped[int | None] = mapped_column(Integer)
    recruiter_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("recruiter.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("name <> '' AND name !~ '[[:cntrl:]]'", name="name"),
        CheckConstraint("concurrency >= 0", name="concurrency"),
        CheckConstraint("prefetch >= 0", name="prefetch"),
        CheckConstraint("lease_seconds > 0", name="lease_seconds"),
    )


class Execution(Base):
    """One attempt of a task on one worker; all attempts are kept."""

    __tablename__ = "execution"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("task.id", ondelete="CASCADE"))
    worker_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("worker.id", ondelete="SET NULL")
    )
    #: Kept when the worker row is deleted.
    worker_name: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(EXECUTION_STATUS)
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    download_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    upload_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    return_code: Mapped[int | None] = mapped_column(Integer)
    failure_class: Mapped[str | None] = mapped_column(FAILURE_CLASS)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    wall_seconds: Mapped[float | None] = mapped_column(Double)
    cpu_user_seconds: Mapped[float | None] = mapped_column(Double)
    cpu_system_seconds: Mapped[float | None] = mapped_column(Double)
    peak_rss_bytes: Mapped[int | None] = mapped_column(BigInteger)
    bytes_in: Mapped[int | None] = mapped_column(BigInteger)
    bytes_out: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        # At most one live attempt per task.
        Index(
            "execution_task_id_live_idx",
            "task_id",
            unique=True,
            postgresql_where=text("status IN ('assigned', 'downloading', 'running', 'uploading')"),
        ),
        Index("execution_task_id_attempt_idx", "task_id", "attempt"),
        # the tasks a worker ran (scitq task list --worker), by name: history outlives rows
        Index("execution_worker_name_task_id_idx", "worker_name", "task_id"),
        # Lease expiry sweep and heartbeat renewal only look at live executions.
        Index(
            "execution_lease_expires_at_idx",
            "lease_expires_at",
            postgresql_where=text("status IN ('assigned', 'downloading', 'running', 'uploading')"),
        ),
        Index(
            "execution_worker_id_live_idx",
            "worker_id",
            postgresql_where=text("status IN ('assigned', 'downloading', 'running', 'uploading')"),
        ),
        # The dashboard's throughput chart: attempts ended in the last hour. Partial, so
        # the updates of live executions (heartbeats, phases) never touch it.
        Index(
            "execution_finished_at_idx",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
        CheckConstraint("attempt >= 1", name="attempt"),
    )


class ExecutionOutput(Base):
    """Append-only output chunks of an execution, in order of ``seq``."""

    __tablename__ = "execution_output"

    execution_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("execution.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream: Mapped[str] = mapped_column(OUTPUT_STREAM)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    text: Mapped[str] = mapped_column(Text)

    __table_args__ = (CheckConstraint("seq >= 0", name="seq"),)


class Signal(Base):
    """A signal for a live execution, delivered to its worker by the heartbeat."""

    __tablename__ = "signal"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("execution.id", ondelete="CASCADE")
    )
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("worker.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(SIGNAL_KIND)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(
            "signal_worker_id_undelivered_idx",
            "worker_id",
            postgresql_where=text("delivered_at IS NULL"),
        ),
    )


class Recruiter(Base):
    """A rule that deploys workers for a batch while it has runnable work."""

    __tablename__ = "recruiter"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("batch.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    provider: Mapped[str] = mapped_column(Text)
    flavor: Mapped[str | None] = mapped_column(Text)
    image: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(Text)
    concurrency: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    prefetch: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    min_workers: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_workers: Mapped[int] = mapped_column(Integer)
    tasks_per_worker: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)

    __table_args__ = (
        CheckConstraint("concurrency >= 1", name="concurrency"),
        CheckConstraint("prefetch >= 0", name="prefetch"),
        CheckConstraint("min_workers >= 0 AND max_workers >= min_workers", name="worker_bounds"),
        CheckConstraint("tasks_per_worker >= 1", name="tasks_per_worker"),
        # one rule per rank and batch (v1's primary key)
        Index("recruiter_batch_id_rank_idx", "batch_id", "rank", unique=True),
    )


class Instance(Base):
    """A machine created by a provider to run a worker."""

    __tablename__ = "instance"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(Text)
    #: The provider's identifier (server id, process id).
    provider_ref: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    worker_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("worker.id", ondelete="SET NULL")
    )
    flavor: Mapped[str | None] = mapped_column(Text)
    image: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(INSTANCE_STATUS, server_default=text("'requested'"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The recruiter that asked for it; NULL for `scitq worker deploy` (or a deleted rule).
    recruiter_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("recruiter.id", ondelete="SET NULL")
    )
    #: What its agent serves, and how.
    batch: Mapped[str | None] = mapped_column(Text)
    concurrency: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    prefetch: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: Kept when idle (copied to its worker once it registers).
    is_permanent: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    #: When its worker first registered (the instance became active).
    active_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("concurrency >= 1", name="concurrency"),
        CheckConstraint("prefetch >= 0", name="prefetch"),
        # a worker name is an instance name: at most one live instance per name
        Index(
            "instance_name_live_idx",
            "name",
            unique=True,
            postgresql_where=text("status <> 'deleted'"),
        ),
    )


class CloudOperation(Base):
    """One deploy or destroy of an instance, with its progress and log."""

    __tablename__ = "cloud_operation"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(CLOUD_OPERATION_KIND)
    instance_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("instance.id", ondelete="SET NULL")
    )
    worker_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("worker.id", ondelete="SET NULL")
    )
    provider: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(CLOUD_OPERATION_STATUS, server_default=text("'pending'"))
    progress: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    log: Mapped[str] = mapped_column(Text, server_default=text("''"))
    #: quota, auth, capacity, transient, config, unknown.
    error_class: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    #: The last error, on one line (the log has the details).
    error: Mapped[str | None] = mapped_column(Text)
    #: A pending operation is not started before this time (back-off after a failure).
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress"),
        CheckConstraint(
            "error_class IN ('quota', 'auth', 'capacity', 'transient', 'config', 'unknown')",
            name="error_class",
        ),
        Index(
            "cloud_operation_status_idx",
            "status",
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
    )


class SchedulerDecision(Base):
    """One decision of the scheduler: what it did (or chose not to do) and why."""

    __tablename__ = "scheduler_decision"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The duty that decided: expire_leases, timeouts, worker_liveness, retention, leadership.
    duty: Mapped[str] = mapped_column(Text)
    #: What the decision is about (execution, task, worker, scheduler, ...) and its id.
    subject_kind: Mapped[str | None] = mapped_column(Text)
    subject_id: Mapped[int | None] = mapped_column(BigInteger)
    #: A short word: lost, kill, timeout, offline, online, pruned, acquired, ...
    decision: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    #: The scheduler process that decided (host:pid); NULL when recorded by hand.
    scheduler: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("duty <> '' AND decision <> ''", name="names"),
        CheckConstraint("jsonb_typeof(details) = 'object'", name="details"),
        # retention and "what happened lately"
        Index("scheduler_decision_at_idx", "at"),
        # "why was execution 12 ..." / "what happened to worker 3"
        Index("scheduler_decision_subject_kind_subject_id_idx", "subject_kind", "subject_id"),
    )


class WorkerLiveness(Base):
    """Each worker's liveness as the scheduler last recorded it (to record changes once)."""

    __tablename__ = "worker_liveness"

    worker_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("worker.id", ondelete="CASCADE"), primary_key=True
    )
    #: online, offline or stopped: the rule of the worker_overview view.
    liveness: Mapped[str] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("liveness IN ('online', 'offline', 'stopped')", name="liveness"),
    )


class WebUser(Base):
    """A person who may log in to the web dashboard (issue 6)."""

    __tablename__ = "web_user"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    #: A werkzeug password hash (``scrypt:...``); never shown, never logged.
    password_hash: Mapped[str] = mapped_column(Text)
    #: admin: may act (pause, retry, edit workers...); viewer: may only look.
    role: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("name <> '' AND name !~ '[[:cntrl:]]'", name="name"),
        CheckConstraint("role IN ('admin', 'viewer')", name="role"),
    )
