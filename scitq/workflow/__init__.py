"""Workflows: steps of a pipeline, their dependencies, and a live view while they run.

Two classes share this package:

* ``scitq.Workflow`` (`scitq.workflow.native.Workflow`): the native workflow, with the
  task fields of `scitq.Client` (``inputs=[...]``, ``retries=``...), submitted all at
  once by ``run()``;
* ``scitq.workflow.Workflow`` (`scitq.workflow.v1.Workflow`): scitq v1's class, with v1's
  arguments (``input='s3://a s3://b'``, ``retry=``, ``rounds=``, ``max_step_workers=``...),
  so that ``from scitq.workflow import Workflow`` scripts run unchanged; it is built on
  the native one. docs/v1-migration.md lists what differs.
"""

from __future__ import annotations

from scitq.workflow.v1 import Step, Workflow, WorkflowException

__all__ = ["Step", "Workflow", "WorkflowException"]
