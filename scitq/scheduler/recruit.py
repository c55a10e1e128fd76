"""The recruit duty: create instances for batches with work, destroy idle ones.

Each run, in one transaction that first checks the scheduler lock:

1. instances whose agent registered become ``active`` (their worker row is tied to the
   instance's recruiter and made non-permanent unless deployed as permanent);
2. for each recruiter, in (batch, rank) order, the target number of workers is
   ``ceil((pending + claimed or running tasks) / tasks_per_worker)``, at least
   ``min_workers`` while the batch has unfinished tasks, at most ``max_workers``; the
   workers already serving the batch and the instances still starting count against
   it. What is missing is taken first from idle recruited workers of the same provider
   and flavor whose batches are finished, then deployed, within the recruiter's maximum
   and the provider's quota, unless its last deploys failed and the back-off runs;
3. recruited instances idle (nothing running, nothing pending in their batches) for the
   grace, offline, or never registered after the boot timeout are destroyed, keeping
   ``min_workers`` while their batch has unfinished tasks.

Every action, and every reason not to act, is a decision (subject ``recruiter`` or
``instance``); a reason not to act is recorded once until it changes. Provider calls
happen later, outside the transaction (`OperationRunner`).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from scitq.config import SchedulerSettings
from scitq.db.recruitment import (
    instance_link_workers,
    instance_reassign,
    instance_release,
    instance_request,
    recruit_releasable,
    recruit_reusable,
    recruit_state,
)
from scitq.scheduler.duties import DutyContext, Recruitment
from scitq.states import TaskStatus

logger = logging.getLogger(__name__)

Row = dict[str, Any]

#: Longest back-off of a recruiter after failed deploys.
MAX_BACKOFF_SECONDS = 3600.0
#: How often providers are listed to find orphan machines.
RECONCILE_SECONDS = 300.0


def provider_quotas(settings: SchedulerSettings) -> dict[str, int]:
    """The instance limit of each configured provider."""
    return settings.providers.quotas()


def backoff_seconds(settings: SchedulerSettings, failures: int) -> float:
    """How long a recruiter waits after ``failures`` failed deploys in a row."""
    return float(
        min(MAX_BACKOFF_SECONDS, settings.deploy_backoff_seconds * 2 ** max(failures - 1, 0))
    )


def _now(conn: psycopg.Connection[Any], now: datetime | None) -> datetime:
    if now is not None:
        return now
    value = conn.execute("SELECT now()").fetchone()
    return value[0] if value else datetime.now(UTC)


def recruit(ctx: DutyContext) -> int:
    """One run of the recruit duty; returns the instances asked for, reused or released."""
    state = ctx.recruitment if ctx.recruitment is not None else Recruitment()
    if not state.quotas:
        state.quotas = provider_quotas(ctx.settings)
    acted = 0
    with ctx.transaction() as conn:
        now = _now(conn, ctx.now)
        decisions = [_active_decision(row) for row in instance_link_workers(conn, ctx.now)]
        recruiters = recruit_state(conn, ctx.now)
        for row in recruiters:
            count, decision = _recruit_one(conn, ctx, state, row, now)
            acted += count
            if decision is not None:
                decisions.append(decision)
        released, release_decisions = _release_idle(conn, ctx, recruiters)
        acted += released
        decisions += release_decisions
        if state.runner is not None:
            for row in state.runner.abandon_stale(conn):
                decisions.append({
                    "subject_kind": "instance", "subject_id": row["instance_id"],
                    "decision": "abandoned",
                    "reason": f"{row['kind']} operation {row['operation_id']} was left running "
                    "by a scheduler that stopped: marked failed; check the provider for a leftover",
                    "details": {"operation_id": row["operation_id"]},
                })  # fmt: skip
        ctx.record(conn, "recruit", decisions)
    if state.runner is not None and not ctx.stop.is_set():
        with ctx.transaction() as conn:
            state.runner.dispatch(conn)
        clock = time.monotonic()
        if state.reconciled_at is None or clock - state.reconciled_at > RECONCILE_SECONDS:
            state.reconciled_at = clock
            state.runner.reconcile(ctx.scheduler)
    return acted


def _active_decision(row: Row) -> Row:
    return {
        "subject_kind": "instance", "subject_id": row["instance_id"], "decision": "active",
        "reason": f"the agent of instance {row['name']} registered as worker {row['worker_id']}",
        "details": {"worker_id": row["worker_id"], "name": row["name"]},
    }  # fmt: skip


def _target(row: Row) -> tuple[int, str]:
    """How many workers the recruiter's batch should have, and why."""
    # recruit_state counts the batch's tasks per status in columns named after them
    # ("active": assigned or running)
    waiting = row[TaskStatus.WAITING]
    work = row[TaskStatus.PENDING] + row["active"]
    tpw = row["tasks_per_worker"]
    if row["batch_paused"]:
        return 0, "its batch is paused"
    if work == 0 and waiting == 0:
        return 0, "its batch has no runnable task"
    wanted = math.ceil(work / tpw) if work else 0
    target = min(row["max_workers"], max(row["min_workers"], wanted))
    why = (
        f"{work} runnable or running tasks at {tpw} per worker"
        if work
        else f"{waiting} tasks wait on dependencies"
    )
    if wanted < row["min_workers"]:
        why += f", at least {row['min_workers']} workers"
    if wanted > row["max_workers"]:
        why += f", at most {row['max_workers']} workers"
    return target, why


def _recruit_one(
    conn: psycopg.Connection[Any], ctx: DutyContext, state: Recruitment, row: Row, now: datetime
) -> tuple[int, Row | None]:
    rid = row["recruiter_id"]
    target, why = _target(row)
    current = row["serving"] + row["starting"]
    details: Row = {key: row[key] for key in (
        "batch", TaskStatus.PENDING, "active", TaskStatus.WAITING, "serving", "starting",
        "recruited", "provider_live", "failures")}  # fmt: skip
    details["target"] = target

    def hold(cause: str, reason: str) -> tuple[int, Row | None]:
        # a reason not to act is recorded once, until it changes
        if state.last.get(rid) == cause:
            return 0, None
        state.last[rid] = cause
        return 0, {"subject_kind": "recruiter", "subject_id": rid, "decision": "hold",
                   "reason": reason, "details": {**details, "cause": cause}}  # fmt: skip

    if target <= current:
        return hold(
            "batch_paused" if row["batch_paused"] else ("enough" if target else "no_work"),
            f"not recruiting for batch {row['batch']}: target {target} workers ({why}), "
            f"{row['serving']} serving and {row['starting']} starting",
        )
    need = target - current
    room = row["max_workers"] - row["recruited"]
    if room <= 0:
        return hold("max", f"not recruiting for batch {row['batch']}: {row['recruited']} "
                    f"instances already, its maximum of {row['max_workers']} workers")  # fmt: skip
    need = min(need, room)
    quota = state.quotas.get(row["provider"])
    if quota is None:
        return hold("provider", f"not recruiting for batch {row['batch']}: provider "
                    f"{row['provider']!r} is not configured on this scheduler "
                    f"(configured: {', '.join(sorted(state.quotas))})")  # fmt: skip
    if row["failures"]:
        wait = backoff_seconds(ctx.settings, row["failures"])
        retry_at = row["last_failed_at"] + timedelta(seconds=wait)
        if now < retry_at:
            return hold(
                f"backoff:{row['failures']}",
                f"not recruiting for batch {row['batch']}: {row['failures']} failed deploys "
                f"in a row, the last one {row['last_error_class']}: {row['last_error']}; "
                f"next attempt after {retry_at.isoformat(sep=' ', timespec='seconds')}",
            )
    reused = _reuse(conn, row, need, ctx.now)
    need -= len(reused)
    deployed: list[Row] = []
    quota_room = quota - row["provider_live"]
    if need > 0 and quota_room <= 0 and not reused:
        return hold("quota", f"not recruiting for batch {row['batch']}: provider "
                    f"{row['provider']} is at its quota of {quota} instances")  # fmt: skip
    if need > 0 and quota_room > 0:
        deployed = instance_request(
            conn, row["provider"], row["batch"], min(need, quota_room),
            concurrency=row["concurrency"], prefetch=row["prefetch"], flavor=row["flavor"],
            image=row["image"], region=row["region"], recruiter_id=rid, now=ctx.now,
        )  # fmt: skip
    state.last.pop(rid, None)
    parts = []
    if reused:
        parts.append(f"reusing {len(reused)} idle workers ({', '.join(r['name'] for r in reused)})")
    if deployed:
        parts.append(f"deploying {len(deployed)} instances on {row['provider']} "
                     f"({', '.join(r['name'] for r in deployed)})")  # fmt: skip
    if need > len(deployed):
        parts.append(f"{need - len(deployed)} more wanted but provider {row['provider']} "
                     f"is at its quota of {quota}")  # fmt: skip
    details.update(reused=[r["instance_id"] for r in reused],
                   deployed=[r["instance_id"] for r in deployed])  # fmt: skip
    decision = {
        "subject_kind": "recruiter", "subject_id": rid,
        "decision": "recruit" if deployed or reused else "hold",
        "reason": f"batch {row['batch']}: target {target} workers ({why}), {row['serving']} "
        f"serving and {row['starting']} starting: " + "; ".join(parts),
        "details": details,
    }  # fmt: skip
    logger.info(decision["reason"], extra={"action": "recruit", "recruiter_id": rid})
    return len(reused) + len(deployed), decision


def _reuse(conn: psycopg.Connection[Any], row: Row, need: int, now: datetime | None) -> list[Row]:
    candidates = recruit_reusable(conn, row["provider"], row["flavor"], need, now)
    for candidate in candidates:
        instance_reassign(conn, candidate["instance_id"], row["recruiter_id"])
    return candidates


def _release_idle(
    conn: psycopg.Connection[Any], ctx: DutyContext, recruiters: list[Row]
) -> tuple[int, list[Row]]:
    settings = ctx.settings
    live = {row["recruiter_id"]: row["recruited"] for row in recruiters}
    decisions: list[Row] = []
    released = 0
    for row in recruit_releasable(
        conn, settings.idle_grace_seconds, settings.boot_timeout_seconds, ctx.now
    ):
        rid, why = row["recruiter_id"], row["why"]
        # keep min_workers while the batch still has work coming
        keep = live.get(rid, 0) <= row["min_workers"] if rid is not None else False
        if why == "idle" and row["unfinished"] > 0 and keep:
            continue
        if why == "idle":
            reason = (
                f"worker {row['name']} idle for {row['idle_seconds']:.0f} s (grace "
                f"{settings.idle_grace_seconds:g} s) and no task pending in its batches"
            )
        elif why == "never_registered":
            reason = (f"the agent of instance {row['name']} did not register within "
                      f"{settings.boot_timeout_seconds:g} s")  # fmt: skip
        else:  # offline: its worker stopped, or sent no heartbeat for its lease + the grace
            reason = f"worker {row['name']} is offline or stopped"
        operation = instance_release(conn, row["instance_id"], reason, ctx.now)
        if rid is not None:
            live[rid] = live.get(rid, 0) - 1
        released += 1
        decisions.append({
            "subject_kind": "instance", "subject_id": row["instance_id"], "decision": "destroy",
            "reason": reason + ": destroying it",
            "details": {"why": why, "worker_id": row["worker_id"], "recruiter_id": rid,
                        "batch": row["batch"], "operation_id": operation},
        })  # fmt: skip
        logger.info("destroying %s: %s", row["name"], reason, extra={"action": "release"})
    return released, decisions
