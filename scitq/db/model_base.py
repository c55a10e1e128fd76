"""What every table of schema ``scitq`` shares: the schema, the naming convention of
constraints and indexes (deterministic names, matched by error translation), the enum
types (their values from `scitq.states`), and the declarative base.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import MetaData, text
from sqlalchemy.dialects.postgresql import ENUM
from sqlalchemy.orm import DeclarativeBase

from scitq import states

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


def _enum(kind: type[StrEnum]) -> ENUM:
    name = next(name for name, values in states.SQL_ENUMS.items() if values is kind)
    values = [member.value for member in kind]
    return ENUM(*values, name=name, schema=SCHEMA, metadata=metadata, create_type=True)


# The values and their meaning are `scitq.states`'.
TASK_STATUS = _enum(states.TaskStatus)
EXECUTION_STATUS = _enum(states.ExecutionStatus)
FAILURE_CLASS = _enum(states.FailureClass)
OUTPUT_STREAM = _enum(states.OutputStream)
SIGNAL_KIND = _enum(states.SignalKind)
WORKER_STATUS = _enum(states.WorkerStatus)
CLOUD_OPERATION_KIND = _enum(states.CloudOperationKind)
CLOUD_OPERATION_STATUS = _enum(states.CloudOperationStatus)
INSTANCE_STATUS = _enum(states.InstanceStatus)

NOW = text("now()")


class Base(DeclarativeBase):
    metadata = metadata
