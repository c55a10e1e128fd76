"""Tables of schema ``scitq``, declared once, one module per entity.

These SQLAlchemy models drive Alembic's autogenerate and serve read-only queries (web,
reporting). Writes that change a state never go through them: they call the stored
functions of ``scitq/sql/functions``. Importing this package declares every table on
`metadata`.
"""

from __future__ import annotations

# SCHEMA and metadata are re-exported: Alembic and the schema tools take them from here
from scitq.db.model_base import SCHEMA as SCHEMA
from scitq.db.model_base import metadata as metadata
from scitq.db.models.cloud import CloudOperation, Instance, Recruiter
from scitq.db.models.execution import Execution, ExecutionOutput, Signal
from scitq.db.models.scheduler import SchedulerDecision
from scitq.db.models.task import (
    Batch,
    BatchDuration,
    BatchTaskCount,
    Task,
    TaskDependency,
    TaskEvent,
)
from scitq.db.models.web_session import WebLoginAttempt, WebSession
from scitq.db.models.web_user import WebUser
from scitq.db.models.worker import AgentRole, Worker, WorkerLiveness, WorkerMetric

__all__ = [
    "SCHEMA",
    "AgentRole",
    "Batch",
    "BatchDuration",
    "BatchTaskCount",
    "CloudOperation",
    "Execution",
    "ExecutionOutput",
    "Instance",
    "Recruiter",
    "SchedulerDecision",
    "Signal",
    "Task",
    "TaskDependency",
    "TaskEvent",
    "WebLoginAttempt",
    "WebSession",
    "WebUser",
    "Worker",
    "WorkerLiveness",
    "WorkerMetric",
    "metadata",
]
