"""scitq v1's objects as its ``scitq.lib.Server`` returned them, from scitq's rows.

v1 returned dicts (``style='dict'``) or `argparse.Namespace` objects (``style='object'``)
with its field names (``task_id``, ``input`` as one space-separated string, ...) and its
status words. scitq's statuses map to v1's here, from `scitq.states`:

* tasks: the same words, except that a canceled task (by a user, or because a
  dependency failed for good: v1 left those waiting forever) is ``failed`` for v1;
* executions: ``assigned`` is v1's ``pending`` (given to a worker, not started),
  ``downloading`` its ``accepted``, ``uploading`` still ``running``; a ``lost`` execution
  (its worker vanished; the task is requeued without spending a retry) is v1's
  ``refused``, a ``timeout`` or ``canceled`` one ``failed``;
* workers: ``paused`` when paused, ``running`` while it heartbeats, else ``offline``.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Iterable, Mapping
from typing import Any

from scitq.client import Execution, Task
from scitq.states import ExecutionStatus, TaskStatus, WorkerLiveness

#: v1's task statuses, in v1's order (``scitq.constants.TASK_STATUS``).
V1_ACCEPTED = "accepted"
V1_DEBUG = "debug"
V1_REFUSED = "refused"
V1_TASK_STATUSES: tuple[str, ...] = (
    TaskStatus.PAUSED, TaskStatus.WAITING, TaskStatus.PENDING, TaskStatus.ASSIGNED,
    V1_ACCEPTED, TaskStatus.RUNNING, TaskStatus.FAILED, TaskStatus.SUCCEEDED, V1_DEBUG,
)  # fmt: skip
#: v1's execution statuses (``scitq.constants.EXECUTION_STATUS``).
V1_EXECUTION_STATUSES: tuple[str, ...] = (
    TaskStatus.PENDING, V1_ACCEPTED, TaskStatus.RUNNING, TaskStatus.FAILED,
    TaskStatus.SUCCEEDED, V1_REFUSED,
)  # fmt: skip
#: v1's worker statuses (``scitq.constants.WORKER_STATUS``; failed and evicted never occur).
V1_WORKER_STATUSES: tuple[str, ...] = (
    TaskStatus.PAUSED, TaskStatus.RUNNING, WorkerLiveness.OFFLINE, TaskStatus.FAILED, "evicted",
)  # fmt: skip

#: The v1 word of each task status.
TASK_STATUS_V1: dict[str, str] = {str(status): str(status) for status in TaskStatus} | {
    TaskStatus.CANCELED: TaskStatus.FAILED
}
#: The task statuses a v1 word selects (v1 ``accepted`` is scitq's ``assigned``).
TASK_STATUSES_OF_V1: dict[str, tuple[str, ...]] = {
    TaskStatus.FAILED: (TaskStatus.FAILED, TaskStatus.CANCELED),
    V1_ACCEPTED: (TaskStatus.ASSIGNED,),
    V1_DEBUG: (),
} | {str(status): (str(status),) for status in TaskStatus if status != TaskStatus.CANCELED}
#: The v1 word of each execution status.
EXECUTION_STATUS_V1: dict[str, str] = {
    ExecutionStatus.ASSIGNED: TaskStatus.PENDING,
    ExecutionStatus.DOWNLOADING: V1_ACCEPTED,
    ExecutionStatus.RUNNING: TaskStatus.RUNNING,
    ExecutionStatus.UPLOADING: TaskStatus.RUNNING,
    ExecutionStatus.SUCCEEDED: TaskStatus.SUCCEEDED,
    ExecutionStatus.FAILED: TaskStatus.FAILED,
    ExecutionStatus.TIMEOUT: TaskStatus.FAILED,
    ExecutionStatus.CANCELED: TaskStatus.FAILED,
    ExecutionStatus.LOST: V1_REFUSED,
}


def check_v1_status(status: str, known: Iterable[str], what: str) -> str:
    """``status`` if it is one of v1's ``known`` words; InvalidArgument otherwise."""
    from scitq.errors import InvalidArgument

    words = list(known)
    if status not in words:
        raise InvalidArgument(f"unknown {what} status {status!r}: use {', '.join(words)}")
    return status


def v1_task(task: Task) -> dict[str, Any]:
    """A task as v1's ``GET /tasks/<id>`` returned it."""
    # v1's retry was what is left: the server decremented it at each failure
    left = task.retries - max(task.attempts_used - 1, 0) if task.attempts_used else task.retries
    return {
        "task_id": task.id,
        "name": task.name,
        "status": TASK_STATUS_V1[task.status],
        "command": task.command,
        "creation_date": task.created_at,
        "modification_date": task.status_changed_at,
        "status_date": task.status_changed_at,
        "batch": task.batch,
        "input": " ".join(task.inputs) or None,
        "output": task.output,
        "container": task.container,
        "container_options": task.container_options or None,
        "resource": " ".join(task.resources) or None,
        "required_task_ids": list(task.depends_on),
        "retry": max(left, 0),
        "download_timeout": _seconds(task.download_timeout_seconds),
        "run_timeout": _seconds(task.run_timeout_seconds),
        "use_cache": task.use_cache,
    }


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


def v1_execution(
    execution: Execution,
    task: Task,
    worker_ids: Mapping[str, int],
    latest: bool,
    output: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """An attempt as v1's ``GET /executions/<id>`` returned it."""
    moments = (
        execution.finished_at, execution.upload_started_at, execution.run_started_at,
        execution.download_started_at, execution.assigned_at,
    )  # fmt: skip
    return {
        "execution_id": execution.id,
        "worker_id": worker_ids.get(execution.worker_name),
        "task_id": execution.task_id,
        "status": EXECUTION_STATUS_V1[execution.status],
        "return_code": execution.return_code,
        "pid": None,
        "creation_date": execution.assigned_at,
        "modification_date": next(moment for moment in moments if moment is not None),
        "output": output,
        "error": error,
        "output_files": None,
        "command": task.command,
        "container": task.container,
        "container_options": task.container_options or None,
        "input": " ".join(task.inputs) or None,
        "output_folder": task.output,
        "resource": " ".join(task.resources) or None,
        "latest": latest,
    }


def v1_worker_status(row: Mapping[str, Any]) -> str:
    if row["is_paused"]:
        return TaskStatus.PAUSED
    if row["liveness"] == WorkerLiveness.ONLINE:
        return TaskStatus.RUNNING
    return WorkerLiveness.OFFLINE


def v1_worker(row: Mapping[str, Any], instance: Mapping[str, Any] | None) -> dict[str, Any]:
    """A worker (a row of ``scitq.worker_overview``) as v1's ``GET /workers/<id>``."""
    batches = list(row["batches"] or [])
    return {
        "worker_id": row["worker_id"],
        "name": row["name"],
        "hostname": row["hostname"],
        "status": v1_worker_status(row),
        "concurrency": row["concurrency"],
        "prefetch": row["prefetch"],
        "load": None,
        "memory": None,
        "stats": None,
        "task_properties": None,
        "creation_date": row["created_at"],
        "modification_date": row["last_heartbeat_at"],
        "last_contact_date": row["last_heartbeat_at"],
        "batch": batches[0] if batches else None,
        # until the scheduler links its instance, a deployed worker is as it was deployed
        "permanent": bool(
            instance["is_permanent"]
            if instance is not None and instance["worker_id"] is None
            else row["is_permanent"]
        ),
        "flavor": instance["flavor"] if instance else None,
        "region": instance["region"] if instance else None,
        "provider": instance["provider"] if instance else None,
        "ipv4": None,
        "ipv6": None,
    }


def v1_recruiter(row: Mapping[str, Any]) -> dict[str, Any]:
    """A recruiter (``scitq.recruiter_overview``) as v1's ``GET /recruiter/``."""
    return {
        "batch": row["batch"],
        "rank": row["rank"],
        "tasks_per_worker": row["tasks_per_worker"],
        "worker_flavor": row["flavor"],
        "worker_provider": row["provider"],
        "worker_region": row["region"],
        "worker_concurrency": row["concurrency"],
        "worker_prefetch": row["prefetch"],
        "minimum_tasks": None,
        "maximum_workers": row["max_workers"],
    }


def as_style(value: Any, style: str) -> Any:
    """``value`` (a dict, or a list of dicts) as v1 returned it in ``style``."""
    if style == "dict":
        return value
    if isinstance(value, list):
        return [as_style(item, style) for item in value]
    if isinstance(value, dict):
        return Namespace(**value)
    return value


def field_of(item: Any, name: str) -> Any:
    """A field of a v1 object, whichever style it comes in (dict or object)."""
    if isinstance(item, Mapping):
        return item[name]
    return getattr(item, name)
