"""Why a task is (not) running, in words, from the facts the query ``task_explain``
gathers (`scitq.db.task.task_explain`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from scitq.db.rows import Explanation
from scitq.states import HELD_TASK_STATUSES, TaskStatus, WorkerLiveness


def _timestamp(value: datetime | str | None) -> str:
    if value is None:
        return "never"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _attempt_outcome(facts: Mapping[str, Any]) -> str:
    outcome = facts["failure_class"] or facts["execution_status"]
    if facts["return_code"] is not None:
        outcome = f"{outcome}, exit code {facts['return_code']}"
    if facts["failure_reason"]:
        outcome = f"{outcome}: {facts['failure_reason']}"
    return f"attempt {facts['attempt']} on {facts['worker_name']} ended ({outcome})"


def _worker_state(worker: Mapping[str, Any]) -> str | None:
    """Why a worker claims nothing now, or None if it has a free slot."""
    if worker["liveness"] != WorkerLiveness.ONLINE:
        heartbeat = _timestamp(worker["last_heartbeat_at"])
        return f"{worker['name']} is {worker['liveness']} (last heartbeat {heartbeat})"
    if worker["is_paused"]:
        return f"{worker['name']} is paused"
    if worker["is_draining"]:
        return f"{worker['name']} is draining"
    if worker["live"] >= worker["slots"]:
        return f"{worker['name']} is full ({worker['live']} of {worker['slots']} slots)"
    return None


def _explain_pending(facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What holds a pending task back; ``runnable`` when nothing does."""
    batch, workers = facts["batch"], facts["workers"]
    reasons = []
    if facts["available_at"] > facts["now"]:
        after = f" after {_attempt_outcome(facts)}" if facts["execution_id"] else ""
        until = _timestamp(facts["available_at"])
        reasons.append(("backoff", f"it is in retry back-off until {until}{after}"))
    if facts["batch_is_paused"]:
        resume = f"`scitq batch resume {batch}` resumes it"
        reasons.append(("batch_paused", f"batch {batch!r} is paused; {resume}"))
    states = [_worker_state(worker) for worker in workers]
    busy = ", ".join(state for state in states if state is not None)
    if not workers:
        start = f"start one with `scitq agent --batch {batch}`"
        reasons.append(("no_worker", f"no worker serves batch {batch!r}; {start}"))
    elif all(worker["liveness"] != WorkerLiveness.ONLINE for worker in workers):
        reasons.append(("no_live_worker", f"no live worker serves batch {batch!r}: {busy}"))
    elif None not in states:
        reasons.append(("workers_busy", f"every worker serving batch {batch!r} is busy: {busy}"))
    if reasons:
        return reasons
    free = ", ".join(
        f"{worker['name']} ({worker['slots'] - worker['live']} free)"
        for worker, state in zip(workers, states, strict=True)
        if state is None
    )
    ahead = "10000+" if facts["ahead"] >= 10000 else str(facts["ahead"])
    queue = f"{ahead} runnable tasks of the batch come before it"
    return [
        ("runnable", f"it is runnable and should be claimed soon: free slots on {free}; {queue}")
    ]


def explain(facts: Mapping[str, Any]) -> Explanation:
    """The explanation of a task from the row of the ``task_explain`` query."""
    task_id, status = facts["id"], facts["status"]
    since = _timestamp(facts["status_changed_at"])
    if status == TaskStatus.PENDING:
        reasons = _explain_pending(facts)
    elif status == TaskStatus.WAITING:
        deps = ", ".join(
            f"task {dep['id']}{' ' + repr(dep['name']) if dep['name'] else ''} ({dep['status']})"
            for dep in facts["unmet_dependencies"]
        )
        reasons = [("dependency", f"it waits for {deps or 'its dependencies'}")]
    elif status == TaskStatus.PAUSED:
        reasons = [(TaskStatus.PAUSED, f"it was paused at {since}; `scitq task resume {task_id}`")]
    elif status == TaskStatus.CANCELED:
        hint = f"`scitq task retry {task_id}` restores it"
        if facts["canceled_by_task_id"] is not None:
            hint += f" and retries task {facts['canceled_by_task_id']}"
        reason = facts["cancel_reason"] or TaskStatus.CANCELED
        reasons = [(TaskStatus.CANCELED, f"{reason} ({since}); {hint}")]
    elif status in HELD_TASK_STATUSES:
        verb = "is assigned to" if status == TaskStatus.ASSIGNED else "runs on"
        started = _timestamp(facts["run_started_at"] or facts["assigned_at"])
        phase = f"attempt {facts['attempt']}, {facts['execution_status']} since {started}"
        reasons = [(status, f"it {verb} worker {facts['worker_name']} ({phase})")]
    else:  # succeeded or failed
        message = _attempt_outcome(facts) if facts["execution_id"] else status
        if status == TaskStatus.FAILED:
            message += f"; no retry left: `scitq task retry {task_id}`"
        reasons = [(status, message)]
    (code, message), *others = reasons
    return Explanation(task_id, status, code, message, tuple(text for _, text in others))


def explanation(found: list[dict[str, Any]]) -> Explanation | None:
    """The result shape of ``task_explain``: the explanation of the task, if it exists."""
    return explain(found[0]) if found else None
