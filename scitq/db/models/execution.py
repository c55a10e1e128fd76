"""Attempts of tasks on workers, their output and the signals for them."""

from __future__ import annotations

from datetime import datetime

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
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from scitq import states
from scitq.db.model_base import (
    EXECUTION_STATUS,
    FAILURE_CLASS,
    OUTPUT_STREAM,
    SIGNAL_KIND,
    Base,
)

#: The predicate of the partial indexes on live executions: the phases, in order. The SQL
#: helper scitq.execution_is_live (05_states.sql) is inlined to the same list, so that the
#: queries written with it match these indexes.
LIVE_PREDICATE = "status IN ({})".format(
    ", ".join(f"'{phase.value}'" for phase in states.EXECUTION_PHASES)
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
    #: Tasks with use_cache: the task's cache key when this attempt ran it (a later edit
    #: of the task does not change what this attempt did), a digest of the listing
    #: (size, MD5 or time) of the inputs and resources it used, and the files it left in
    #: the output folder ({relative path: size}); a later task of the same key compares.
    cache_key: Mapped[str | None] = mapped_column(Text)
    input_fingerprint: Mapped[str | None] = mapped_column(Text)
    output_manifest: Mapped[dict[str, int] | None] = mapped_column(JSONB)
    #: A cache hit: the earlier succeeded execution whose output this one reused.
    cached_from_execution_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("execution.id", ondelete="SET NULL")
    )

    __table_args__ = (
        # At most one live attempt per task.
        Index(
            "execution_task_id_live_idx",
            "task_id",
            unique=True,
            postgresql_where=text(LIVE_PREDICATE),
        ),
        Index("execution_task_id_attempt_idx", "task_id", "attempt"),
        # the tasks a worker ran (scitq task list --worker), by name: history outlives rows
        Index("execution_worker_name_task_id_idx", "worker_name", "task_id"),
        # Lease expiry sweep and heartbeat renewal only look at live executions.
        Index(
            "execution_lease_expires_at_idx",
            "lease_expires_at",
            postgresql_where=text(LIVE_PREDICATE),
        ),
        Index(
            "execution_worker_id_live_idx",
            "worker_id",
            postgresql_where=text(LIVE_PREDICATE),
        ),
        # The dashboard's throughput chart: attempts ended in the last hour. Partial, so
        # the updates of live executions (heartbeats, phases) never touch it.
        Index(
            "execution_finished_at_idx",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
        # the cache candidates of a claim (task_claim_v2): the latest of a key
        Index(
            "execution_cache_key_idx",
            "cache_key",
            "id",
            postgresql_where=text("cache_key IS NOT NULL"),
        ),
        CheckConstraint("attempt >= 1", name="attempt"),
    )


class ExecutionOutput(Base):
    """Append-only output chunks of an execution, in order of ``seq``.

    Partitioned by ranges of execution ids (all the output of an attempt in one
    partition), each range by ``retained``: its ``_all`` leaf holds what agents wrote, its
    ``_failed`` leaf the output of the attempts that did not succeed, copied there when
    the retention drops the ``_all`` leaf (``scitq.partition_prune_v1``, 65_retention.sql).
    """

    __tablename__ = "execution_output"

    execution_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("execution.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: False as written; true for the output of a failed attempt kept past its range.
    retained: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("false"))
    stream: Mapped[str] = mapped_column(OUTPUT_STREAM)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    text: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("seq >= 0", name="seq"),
        {"postgresql_partition_by": "RANGE (execution_id)"},
    )


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
