"""The environment of a task's command.

A bare command gets the agent's own environment (``PATH`` kept; the agent's
credentials, ``SCITQ_DATABASE_URL``, ``SCITQ_*PASSWORD``/``SECRET``/``TOKEN``/
``ACCESS_KEY*`` and ``PGPASSWORD``, removed), overlaid by the task's variables (the
task's environment and ``SCITQ_*``), overlaid by ``INPUT``, ``OUTPUT``, ``RESOURCE``,
``TEMP`` (the work folder's subfolders; the container paths in a container) and ``CPU``.
A container gets only the task's variables and those five (`scitq.agent.containers`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from scitq.agent.containers import CONTAINER_PATHS
from scitq.config.secrets import is_credential_variable

#: The variables naming the work folder's subfolders, and those subfolders.
WORK_FOLDER_VARIABLES = {"INPUT": "input", "OUTPUT": "output", "RESOURCE": "resource",
                         "TEMP": "tmp"}  # fmt: skip


def inherited_environment() -> dict[str, str]:
    """The agent's environment minus its own credentials: a task that prints its
    environment must not put the database password or S3 secret in its stored output."""
    return {name: value for name, value in os.environ.items() if not is_credential_variable(name)}


def task_environment(
    env: Mapping[str, str], work_dir: Path, cpu: int, *, in_container: bool
) -> dict[str, str]:
    """The task's variables: ``env``, then those scitq derives from the work folder.

    Args:
        env: the task's own variables and the ``SCITQ_*`` ones.
        work_dir: the execution's work folder.
        cpu: the ``CPU`` variable (cores divided by the worker's concurrency).
        in_container: give the container paths (``/input``...) instead of the folders.
    """
    if in_container:
        paths = dict(CONTAINER_PATHS)
    else:
        paths = {name: str(work_dir / sub) for name, sub in WORK_FOLDER_VARIABLES.items()}
    return {**env, **paths, "CPU": str(cpu)}
