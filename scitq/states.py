"""The one vocabulary of states: every status word scitq's Python code uses comes from here.

The PostgreSQL enum types are declared from these classes (`scitq.db.model_base`), the
allowed transitions live beside the stored functions (``scitq.task_transition`` and
``scitq.execution_transition``, which alone may change a status), and a test checks that
the enum types of a migrated database hold exactly these values, in this order.

Members are `enum.StrEnum`s: they compare equal to, format as and are sent to the
database as their value (``TaskStatus.RUNNING == "running"``).

Adding a task state: a member here (and in the live or final set), its transitions in
``scitq/sql/functions/05_states.sql``, a migration that adds the enum value and the
transitions, and the templates or styles that show it.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    """Where a task is in its life (DESIGN §3)."""

    #: dependencies unmet
    WAITING = "waiting"
    #: runnable, once ``available_at`` has passed
    PENDING = "pending"
    #: claimed by a worker (prefetch or download)
    ASSIGNED = "assigned"
    #: its command started
    RUNNING = "running"
    #: the last attempt succeeded
    SUCCEEDED = "succeeded"
    #: the last attempt failed and no retry is left
    FAILED = "failed"
    #: held back by a user
    PAUSED = "paused"
    #: by a user, or because a dependency failed for good
    CANCELED = "canceled"


#: Statuses a task leaves without a user's action: it still has work ahead.
LIVE_TASK_STATUSES = frozenset(
    {
        TaskStatus.WAITING,
        TaskStatus.PENDING,
        TaskStatus.ASSIGNED,
        TaskStatus.RUNNING,
        TaskStatus.PAUSED,
    }
)
#: Statuses a task keeps until a user retries it.
FINAL_TASK_STATUSES = frozenset(TaskStatus) - LIVE_TASK_STATUSES
#: Statuses in which a worker holds the task.
HELD_TASK_STATUSES = frozenset({TaskStatus.ASSIGNED, TaskStatus.RUNNING})


class ExecutionStatus(StrEnum):
    """Where one attempt of a task is; the first four are its phases on the worker."""

    ASSIGNED = "assigned"
    DOWNLOADING = "downloading"
    RUNNING = "running"
    UPLOADING = "uploading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: its worker stopped renewing the lease
    LOST = "lost"
    CANCELED = "canceled"
    #: past its download or run timeout
    TIMEOUT = "timeout"


#: The phases of an execution on its worker, in order; a live execution only moves forward.
EXECUTION_PHASES = (
    ExecutionStatus.ASSIGNED,
    ExecutionStatus.DOWNLOADING,
    ExecutionStatus.RUNNING,
    ExecutionStatus.UPLOADING,
)
LIVE_EXECUTION_STATUSES = frozenset(EXECUTION_PHASES)
FINAL_EXECUTION_STATUSES = frozenset(ExecutionStatus) - LIVE_EXECUTION_STATUSES


class FailureClass(StrEnum):
    """Why an execution did not succeed."""

    EXIT = "exit"
    TIMEOUT = "timeout"
    OOM = "oom"
    DOWNLOAD = "download"
    UPLOAD = "upload"
    LOST = "lost"
    CANCELED = "canceled"
    #: the worker's container runtime could not run the task (no runtime, daemon down):
    #: the machine's fault, not the command's
    RUNTIME = "runtime"


class WorkerStatus(StrEnum):
    ONLINE = "online"
    STOPPED = "stopped"


class WorkerLiveness(StrEnum):
    """What the views report of a worker: its status, or offline without heartbeats."""

    ONLINE = "online"
    OFFLINE = "offline"
    STOPPED = "stopped"


class SignalKind(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    TERM = "term"
    KILL = "kill"


class OutputStream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    #: lines written by scitq itself (staging, retries, signals)
    SCITQ = "scitq"


class CloudOperationKind(StrEnum):
    DEPLOY = "deploy"
    DESTROY = "destroy"


class CloudOperationStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


LIVE_CLOUD_OPERATION_STATUSES = frozenset(
    {CloudOperationStatus.PENDING, CloudOperationStatus.RUNNING}
)


class InstanceStatus(StrEnum):
    REQUESTED = "requested"
    BUILDING = "building"
    ACTIVE = "active"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"


#: The PostgreSQL enum types and the classes that define their values.
SQL_ENUMS: dict[str, type[StrEnum]] = {
    "task_status": TaskStatus,
    "execution_status": ExecutionStatus,
    "failure_class": FailureClass,
    "output_stream": OutputStream,
    "signal_kind": SignalKind,
    "worker_status": WorkerStatus,
    "cloud_operation_kind": CloudOperationKind,
    "cloud_operation_status": CloudOperationStatus,
    "instance_status": InstanceStatus,
}
