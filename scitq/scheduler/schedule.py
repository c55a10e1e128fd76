"""Which duties the scheduler runs, and how often.

The duties themselves are in `scitq.scheduler.duties` (lease expiry, timeouts, worker
liveness, partitions, retention) and `scitq.scheduler.recruit` (cloud recruitment).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scitq.config import SchedulerSettings
from scitq.scheduler.duties import (
    DutyContext,
    apply_retention,
    enforce_timeouts,
    expire_leases,
    maintain_partitions,
    track_worker_liveness,
)
from scitq.scheduler.recruit import recruit


@dataclass(frozen=True)
class Duty:
    """A duty, how often it runs (``period`` returns None when it is disabled) and what
    the number its ``run`` returns counts."""

    name: str
    run: Callable[[DutyContext], int]
    period: Callable[[SchedulerSettings], float | None]
    counts: str


def _retention_period(settings: SchedulerSettings) -> float | None:
    enabled = (settings.output_retention_days, settings.failed_output_retention_days,
               settings.event_retention_days, settings.decision_retention_days)  # fmt: skip
    return None if enabled == (None,) * 4 else settings.retention_seconds


def _partition_period(settings: SchedulerSettings) -> float:
    return settings.partition_seconds


def _frequent(settings: SchedulerSettings) -> float:
    return settings.duty_seconds


def _recruit_period(settings: SchedulerSettings) -> float:
    return settings.recruit_seconds


DUTIES: tuple[Duty, ...] = (
    Duty("expire_leases", expire_leases, _frequent, "executions lost"),
    Duty("timeouts", enforce_timeouts, _frequent, "overdue executions killed or marked"),
    Duty("worker_liveness", track_worker_liveness, _frequent, "liveness changes"),
    Duty("partitions", maintain_partitions, _partition_period, "partitions created"),
    Duty("retention", apply_retention, _retention_period, "partitions dropped, decisions deleted"),
    Duty("recruit", recruit, _recruit_period, "instances recruited, reused or released"),
)


def scheduled(settings: SchedulerSettings) -> list[tuple[Duty, float]]:
    """The enabled duties with their periods in seconds."""
    enabled = [(duty, duty.period(settings)) for duty in DUTIES]
    return [(duty, period) for duty, period in enabled if period is not None]
