"""Workers, and their liveness as the scheduler last recorded it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from scitq.db.model_base import NOW, WORKER_STATUS, Base


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


class AgentRole(Base):
    """A login role created for one worker (``scitq db create-role --agent``): it may
    register that worker only, and serve only ``batches``. Kept apart from the worker row
    so that the binding outlives a deleted worker and reserves its name."""

    __tablename__ = "agent_role"

    role_name: Mapped[str] = mapped_column(Text, primary_key=True)
    worker_name: Mapped[str] = mapped_column(Text, unique=True)
    #: The batches the role may ever serve; NULL: any.
    batches: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=NOW)


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


class WorkerMetric(Base):
    """One sample of a worker's host figures, sent with a heartbeat; a bounded history
    (`scitq.worker_record_metrics` keeps one day, one sample per 5 seconds at most)."""

    __tablename__ = "worker_metric"

    worker_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("worker.id", ondelete="CASCADE"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    load1: Mapped[float | None] = mapped_column(Double)
    cpu_percent: Mapped[float | None] = mapped_column(Double)
    iowait_percent: Mapped[float | None] = mapped_column(Double)
    memory_used_bytes: Mapped[int | None] = mapped_column(BigInteger)
    memory_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    #: of the file system of the agent's work dir
    disk_free_bytes: Mapped[int | None] = mapped_column(BigInteger)
    disk_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    #: the agent claims nothing while disk_free_bytes is below this (NULL: no floor)
    disk_floor_bytes: Mapped[int | None] = mapped_column(BigInteger)
    disk_read_bytes_per_second: Mapped[float | None] = mapped_column(Double)
    disk_write_bytes_per_second: Mapped[float | None] = mapped_column(Double)
    network_receive_bytes_per_second: Mapped[float | None] = mapped_column(Double)
    network_send_bytes_per_second: Mapped[float | None] = mapped_column(Double)
