"""The scheduler's decision log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Index,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from scitq.db.model_base import Base


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
