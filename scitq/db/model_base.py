"""What every table of schema ``scitq`` shares: the schema, the naming convention of
constraints and indexes (deterministic names, matched by error translation), the enum
types with the meaning of each value, and the declarative base.
"""

from __future__ import annotations

from sqlalchemy import MetaData, text
from sqlalchemy.dialects.postgresql import ENUM
from sqlalchemy.orm import DeclarativeBase

SCHEMA = "scitq"

metadata = MetaData(
    schema=SCHEMA,
    naming_convention={
        "ix": "%(table_name)s_%(column_0_N_name)s_idx",
        "uq": "%(table_name)s_%(column_0_N_name)s_key",
        "ck": "%(table_name)s_%(constraint_name)s_check",
        "fk": "%(table_name)s_%(column_0_name)s_fkey",
        "pk": "%(table_name)s_pkey",
    },
)


def _enum(name: str, *values: str) -> ENUM:
    return ENUM(*values, name=name, schema=SCHEMA, metadata=metadata, create_type=True)


#: waiting: dependencies unmet; pending: runnable (once available_at has passed);
#: assigned: claimed by a worker (prefetch or download); running: command started;
#: succeeded / failed: final outcome of the last attempt, no retry left for failed;
#: paused: held back by a user; canceled: by a user or because a dependency failed.
TASK_STATUS = _enum(
    "task_status",
    "waiting",
    "pending",
    "assigned",
    "running",
    "succeeded",
    "failed",
    "paused",
    "canceled",
)
#: Live statuses are assigned, downloading, running, uploading; the others are final.
EXECUTION_STATUS = _enum(
    "execution_status",
    "assigned",
    "downloading",
    "running",
    "uploading",
    "succeeded",
    "failed",
    "lost",
    "canceled",
    "timeout",
)
FAILURE_CLASS = _enum(
    "failure_class", "exit", "timeout", "oom", "download", "upload", "lost", "canceled"
)
OUTPUT_STREAM = _enum("output_stream", "stdout", "stderr", "scitq")
SIGNAL_KIND = _enum("signal_kind", "pause", "resume", "term", "kill")
WORKER_STATUS = _enum("worker_status", "online", "stopped")
CLOUD_OPERATION_KIND = _enum("cloud_operation_kind", "deploy", "destroy")
CLOUD_OPERATION_STATUS = _enum(
    "cloud_operation_status", "pending", "running", "succeeded", "failed"
)
INSTANCE_STATUS = _enum(
    "instance_status", "requested", "building", "active", "deleting", "deleted", "error"
)

NOW = text("now()")


class Base(DeclarativeBase):
    metadata = metadata
