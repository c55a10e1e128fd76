"""The scheduler's duties: each short, idempotent, and recorded in scheduler_decision.

A duty is a function of a `DutyContext` returning how many things it acted on. Its work
is done by stored functions, in transactions that first check that this scheduler still
holds the scheduler lock; each transaction records the decisions it took with the changes
they explain. `scitq.scheduler.schedule` lists them with their period; recruitment is in
`scitq.scheduler.recruit`.

Retries need no duty: a failed task goes back to ``pending`` with ``available_at`` after
its back-off, and claims skip it until then.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from scitq.config import SchedulerSettings
from scitq.db.batch import batch_count_compact
from scitq.db.connection import translated
from scitq.db.execution import (
    execution_expire_leases,
    execution_expiry_outcome,
    execution_overdue,
    execution_timeout,
)
from scitq.db.partition import partition_ensure, partition_prune
from scitq.db.scheduler import scheduler_decision_prune, scheduler_lock_held, scheduler_record
from scitq.db.task import task_signal
from scitq.db.worker import worker_track_liveness
from scitq.scheduler.leadership import SCHEDULER_LOCK, LeadershipLost
from scitq.states import ExecutionStatus, TaskStatus

if TYPE_CHECKING:
    from scitq.scheduler.operations import OperationRunner

logger = logging.getLogger(__name__)

Row = dict[str, Any]

#: Executions marked lost per call of execution_expire_leases_v1 (its LIMIT).
EXPIRE_BATCH = 1000
#: Overdue executions handled per run of the timeout duty.
TIMEOUT_BATCH = 1000
SECONDS_PER_DAY = 86400.0


@dataclass
class Recruitment:
    """What the recruit duty (`scitq.scheduler.recruit`) keeps between runs of one active term.

    Attributes:
        runner: starts cloud operations (None: decide only, as in unit tests).
        quotas: instances each provider may run at most (scitq's count).
        last: the last reason not to act recorded per recruiter, so that it is recorded
            once until it changes.
    """

    runner: OperationRunner | None = None
    quotas: dict[str, int] = field(default_factory=dict)
    last: dict[int, str] = field(default_factory=dict)
    reconciled_at: float | None = None


@dataclass
class DutyContext:
    """What a duty works with.

    Attributes:
        conn: an autocommit connection, used by this duty only.
        settings: the scheduler's settings.
        scheduler: the name recorded with decisions (``host:pid``).
        lock_pid: backend pid of the session that must hold the scheduler lock for the
            duty to act; None skips the check (tests, one-off runs).
        now: the time to act at (tests); None is the database's time.
        stop: set when the scheduler stops: long duties end between transactions.
        recruitment: what the recruit duty keeps between runs (its operation runner).
    """

    conn: psycopg.Connection[Any]
    settings: SchedulerSettings
    scheduler: str | None = None
    lock_pid: int | None = None
    now: datetime | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    recruitment: Recruitment | None = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction that acts only while this scheduler holds the lock."""
        with translated(), self.conn.transaction():
            if self.lock_pid is not None and not scheduler_lock_held(
                self.conn, SCHEDULER_LOCK, self.lock_pid
            ):
                raise LeadershipLost("this scheduler no longer holds the scheduler lock")
            yield self.conn

    def record(self, conn: psycopg.Connection[Any], duty: str, decisions: list[Row]) -> None:
        if decisions:
            scheduler_record(conn, duty, decisions, self.scheduler, self.now)


def _time(value: datetime | None) -> str:
    return "?" if value is None else value.isoformat(sep=" ", timespec="seconds")


# -- lease expiry -------------------------------------------------------------------------


def expire_leases(ctx: DutyContext) -> int:
    """Mark executions whose lease expired as lost; their tasks are retried or failed.

    Claims expire leases too (so work goes on without a scheduler); what they expire is
    not recorded here.
    """
    total = 0
    while not ctx.stop.is_set():
        with ctx.transaction() as conn:
            lost = execution_expire_leases(conn, now=ctx.now)
            if lost:
                outcome = execution_expiry_outcome(conn, [row["execution_id"] for row in lost])
                ctx.record(conn, "expire_leases", [_lost_decision(row) for row in outcome])
        total += len(lost)
        if len(lost) < EXPIRE_BATCH:
            break
    return total


def _lost_decision(row: Row) -> Row:
    task_id, status = row["task_id"], row["task_status"]
    if status == TaskStatus.PENDING and row["available_at"] <= row["finished_at"]:
        used = f"free requeue {row['requeue_count']} of {row['requeues']}"
        fate = f"task {task_id} requeued without spending a retry ({used})"
    elif status == TaskStatus.PENDING:
        fate = f"task {task_id} requeued, claimable from {_time(row['available_at'])}"
    elif status == TaskStatus.FAILED:
        fate = f"task {task_id} failed: no free requeue nor retry left"
    else:
        fate = f"task {task_id} is {status}"
    return {
        "subject_kind": "execution",
        "subject_id": row["execution_id"],
        "decision": ExecutionStatus.LOST,
        "reason": f"lease expired at {_time(row['lease_expires_at'])}: worker "
        f"{row['worker_name']} stopped heartbeating; {fate}",
        "details": {
            "task_id": task_id,
            "attempt": row["attempt"],
            "worker_name": row["worker_name"],
            "lease_expires_at": row["lease_expires_at"],
            "task_status": status,
            "available_at": row["available_at"],
        },
    }


# -- timeouts -----------------------------------------------------------------------------


def enforce_timeouts(ctx: DutyContext) -> int:
    """A safety net for agents that do not enforce timeouts.

    An execution downloading or running longer than its timeout plus the grace gets a
    kill signal; still live a grace after the signal, it is marked ``timeout`` (its task
    is retried or failed, its agent told to kill its copy).
    """
    grace = ctx.settings.timeout_grace_seconds
    with ctx.transaction() as conn:
        overdue = execution_overdue(conn, grace, TIMEOUT_BATCH, now=ctx.now)
        to_kill = [row for row in overdue if row["kill_age_seconds"] is None]
        to_mark = [
            row
            for row in overdue
            if row["kill_age_seconds"] is not None and row["kill_age_seconds"] > grace
        ]
        decisions: list[Row] = []
        if to_kill:
            task_signal(conn, [row["task_id"] for row in to_kill], "kill", now=ctx.now)
            decisions += [_timeout_decision(row, "kill", grace) for row in to_kill]
        for phase in (ExecutionStatus.DOWNLOADING, ExecutionStatus.RUNNING):
            rows = [row for row in to_mark if row["phase"] == phase]
            if not rows:
                continue
            what = _timeout_kind(phase)
            reason = f"{what} timeout exceeded: still {phase} {grace:g} s after a kill signal"
            statuses = {
                row["execution_id"]: row["task_status"]
                for row in execution_timeout(
                    conn, [row["execution_id"] for row in rows], reason, now=ctx.now
                )
            }
            marked = ExecutionStatus.TIMEOUT
            decisions += [
                _timeout_decision(row, marked, grace, statuses[row["execution_id"]])
                for row in rows
                if row["execution_id"] in statuses
            ]
        ctx.record(conn, "timeouts", decisions)
    return len(decisions)


def _timeout_decision(row: Row, decision: str, grace: float, task_status: str | None = None) -> Row:
    what = _timeout_kind(row["phase"])
    over = (
        f"{row['phase']} for {row['elapsed_seconds']:.0f} s, over its {what} timeout of "
        f"{row['timeout_seconds']:g} s + {grace:g} s grace"
    )
    if decision == "kill":
        reason = f"{over}: kill signal sent to worker {row['worker_name']}"
    else:
        reason = (
            f"{over}, and not stopped {row['kill_age_seconds']:.0f} s after the kill signal: "
            f"marked timeout; task {row['task_id']} is {task_status}"
        )
    details: Row = {
        "task_id": row["task_id"],
        "phase": row["phase"],
        "worker_name": row["worker_name"],
        "timeout_seconds": row["timeout_seconds"],
        "elapsed_seconds": row["elapsed_seconds"],
    }
    if task_status is not None:
        details["task_status"] = task_status
    return {
        "subject_kind": "execution",
        "subject_id": row["execution_id"],
        "decision": decision,
        "reason": reason,
        "details": details,
    }


def _timeout_kind(phase: str) -> str:
    """Which timeout applies to an execution in ``phase``: ``download`` or ``run``."""
    return "download" if phase == ExecutionStatus.DOWNLOADING else "run"


# -- worker liveness ----------------------------------------------------------------------


def track_worker_liveness(ctx: DutyContext) -> int:
    """Record workers going offline (no heartbeat within their lease), online or stopped."""
    with ctx.transaction() as conn:
        changes = worker_track_liveness(conn, ctx.scheduler, ctx.now)
    for change in changes:
        logger.info(
            "worker %s is %s (%s)", change["worker_name"], change["liveness"],
            f"was {change['previous']}" if change["previous"] else "first seen",
            extra={"action": "worker_liveness", "worker_id": change["worker_id"],
                   "liveness": change["liveness"]},
        )  # fmt: skip
    return len(changes)


# -- retention ----------------------------------------------------------------------------


def apply_retention(ctx: DutyContext) -> int:
    """Drop old execution output and events by whole partitions, and delete old
    decisions, as configured. Returns the partitions dropped and decisions deleted."""
    settings = ctx.settings
    done = 0
    periods = (settings.output_retention_days, settings.failed_output_retention_days,
               settings.event_retention_days)  # fmt: skip
    if periods != (None, None, None):
        with ctx.transaction() as conn:
            acted = partition_prune(conn, *periods, now=ctx.now)
            decisions = [
                {"subject_kind": "partition", "decision": row["action"],
                 "reason": f"{row['action']} {row['partition']} ({row['rows']} rows): "
                           + _retention_reason(settings),
                 "details": {"partition": row["partition"], "rows": row["rows"]}}
                for row in acted
            ]  # fmt: skip
            ctx.record(conn, "retention", decisions)
        done += sum(1 for row in acted if row["action"] == "dropped")
    if settings.decision_retention_days is not None:
        done += _prune(
            ctx, "scheduler_decision", scheduler_decision_prune,
            settings.decision_retention_days, "scheduler decisions older than {days:g} days",
        )  # fmt: skip
    return done


def _retention_reason(settings: SchedulerSettings) -> str:
    def days(value: float | None) -> str:
        return "forever" if value is None else f"{value:g} days"

    return (
        f"output of succeeded attempts kept {days(settings.output_retention_days)}, "
        f"of the others {days(settings.failed_output_retention_days)}, "
        f"events {days(settings.event_retention_days)}"
    )


def maintain_partitions(ctx: DutyContext) -> int:
    """Create the partitions that writes will need soon and fold the per-backend rows of
    the batch counters. Returns the partitions created."""
    settings = ctx.settings
    with ctx.transaction() as conn:
        created = partition_ensure(
            conn, settings.output_partition_executions, settings.partitions_ahead,
            settings.event_partition_days, settings.partitions_ahead, now=ctx.now,
        )  # fmt: skip
    with ctx.transaction() as conn:
        batch_count_compact(conn)
    for row in created:
        logger.info("created partition %s (%d stray rows moved in)", row["partition"],
                    row["moved_rows"], extra={"action": "partitions"})  # fmt: skip
    return len(created)


def _prune(
    ctx: DutyContext,
    kind: str,
    prune: Callable[..., int],
    days: float,
    what: str,
) -> int:
    batch = ctx.settings.retention_batch
    total = 0
    while not ctx.stop.is_set():
        with ctx.transaction() as conn:
            count = prune(conn, days * SECONDS_PER_DAY, batch, now=ctx.now)
        total += count
        if count < batch:
            break
    if total:
        with ctx.transaction() as conn:
            decision = {
                "subject_kind": kind,
                "decision": "pruned",
                "reason": f"deleted {total} " + what.format(days=days),
                "details": {"rows": total, "older_than_days": days},
            }
            ctx.record(conn, "retention", [decision])
    return total
