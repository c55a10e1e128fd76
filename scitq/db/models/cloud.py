"""Cloud recruitment: recruiters, instances and cloud operations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from scitq.db.model_base import (
    CLOUD_OPERATION_KIND,
    CLOUD_OPERATION_STATUS,
    INSTANCE_STATUS,
    NOW,
    Base,
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
