"""Editing and rerunning tasks: the part of `scitq.Client` built on ``task_update_v1``
and ``task_rerun_v1`` (scitq v1's task update, modify and relaunch)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

from scitq.db.task import task_edits, task_rerun, task_update
from scitq.errors import InvalidArgument
from scitq.transfer import check_task_uris

#: Fields `TaskEdits.update` may change (see task_update_v1).
UPDATABLE_FIELDS = frozenset({
    "command", "name", "shell", "container", "container_options", "inputs", "resources",
    "output", "retries", "requeues", "retry_delay_seconds", "download_timeout_seconds",
    "run_timeout_seconds", "priority", "env", "tags", "use_cache", "batch",
})  # fmt: skip


def update_tasks(
    conn: psycopg.Connection[Any],
    task_ids: Iterable[int],
    changes: Mapping[str, Any],
    rerun: bool | None = None,
    by: str | None = None,
) -> dict[int, tuple[str, bool]]:
    """`TaskEdits.update` on a connection (the dashboard's): fields and URIs checked."""
    unknown = sorted(set(changes) - UPDATABLE_FIELDS)
    if unknown:
        raise InvalidArgument(
            f"a task update cannot change {unknown[0]!r}: use {', '.join(sorted(UPDATABLE_FIELDS))}"
        )
    if not changes:
        raise InvalidArgument("nothing to update: give at least one field")
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()}
    check_task_uris({k: v for k, v in fields.items() if v is not None}, "the update")
    rows = task_update(conn, list(task_ids), fields, rerun, by)
    return {int(r["id"]): (str(r["status"]), bool(r["rerun"])) for r in rows}


class TaskEdits:
    """`scitq.Client`'s methods that change submitted tasks."""

    @property
    def connection(self) -> psycopg.Connection[Any]:  # `scitq.Client`'s (reopened if it broke)
        raise NotImplementedError

    def update(
        self,
        task_ids: Iterable[int],
        *,
        rerun: bool | None = None,
        by: str | None = None,
        **changes: Any,
    ) -> dict[int, tuple[str, bool]]:
        """Change fields of tasks; returns each task's status now and whether it runs again.

        Changing what runs (command, container, inputs, resources, output, env, timeouts,
        use_cache...) runs the task again: a running attempt is killed first, a finished
        task is rerun, with a fresh retry budget. ``rerun`` True reruns whatever changed,
        False never. ``None`` clears an optional field. ``by`` names who edits (the
        event log records it; the database role by default).
        """
        return update_tasks(self.connection, task_ids, changes, rerun, by)

    def rerun(self, task_ids: Iterable[int]) -> dict[int, str]:
        """Run tasks again: finished ones (succeeded too) are requeued with a fresh retry
        budget, running ones are killed and requeued; returns the status of those rerun.
        Earlier attempts are kept (``executions``)."""
        return {int(r["id"]): str(r["status"]) for r in task_rerun(self.connection, task_ids)}

    def edits(self, task_id: int) -> list[Mapping[str, Any]]:
        """The edits of a task, oldest first: ``at``, ``by``, ``fields`` (old and new)."""
        return list(task_edits(self.connection, task_id))
