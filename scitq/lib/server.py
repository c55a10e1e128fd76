"""`Server`: scitq v1's Python client (``scitq.lib.Server``) on scitq's database.

v1's ``Server`` wrapped a REST server; here every method is a call of `scitq.Client` or
of the database seam, so there is no server to reach, to retry or to queue writes for:
``asynchronous``, ``put_timeout`` and ``get_timeout`` are accepted and have nothing to do.
Tasks, executions, workers, batches, recruiters and flavors come back with v1's field
names and status words (`scitq.lib.shapes`), as dicts or, with ``style='object'``,
`argparse.Namespace` objects. v1's worker protocol (ping, callback, executions written
by workers) is ``scitq agent``'s, over SQL: those methods say so and do nothing.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from scitq.client import DEFAULT_BATCH, Client, Execution, Task
from scitq.compat import split_uris
from scitq.config import Settings, load_settings
from scitq.config.database import server_database_url
from scitq.db.execution import execution_get
from scitq.db.task import task_delete, task_list, task_pause, task_resume, task_statuses
from scitq.db.worker import worker_list
from scitq.errors import InvalidArgument, NotFound
from scitq.lib.admin import AdminMethods, refuse
from scitq.lib.join import join_tasks
from scitq.lib.shapes import (
    TASK_STATUS_V1,
    TASK_STATUSES_OF_V1,
    V1_DEBUG,
    V1_EXECUTION_STATUSES,
    V1_TASK_STATUSES,
    as_style,
    check_v1_status,
    v1_execution,
    v1_task,
)
from scitq.states import FINAL_TASK_STATUSES, HELD_TASK_STATUSES, OutputStream, TaskStatus

logger = logging.getLogger(__name__)

#: v1's defaults (``scitq.lib``): kept for the signatures, unused without a REST server.
PUT_TIMEOUT = 30
GET_TIMEOUT = 150
#: The filters v1's ``tasks(**args)`` and ``executions(**args)`` accepted.
TASK_FILTERS = ("task_id", "status", "batch", "name")
EXECUTION_FILTERS = ("task_id", "execution_id", "status", "latest", "batch", "task_name",
                     "limit", "reverse", "no_output", "trunc")  # fmt: skip


class Server(AdminMethods):
    """scitq v1's ``scitq.lib.Server``, served by scitq's database.

    Args:
        server: the server as v1 named it: a host name (``SCITQ_SERVER``), ``host:port``,
            ``http://host:5000``, or a PostgreSQL URL; None: ``SCITQ_SERVER``, else the
            configured database (see `scitq.config.database.server_database_url`).
        style: ``dict`` (default) or ``object`` (`argparse.Namespace` results).
        asynchronous, put_timeout, get_timeout: v1's; accepted, unused (see the module).
        ip: v1's name of ``server``.
        settings: settings to use instead of `scitq.config.load_settings`.
    """

    def __init__(
        self,
        server: str | None = None,
        style: str = "dict",
        asynchronous: bool = True,
        put_timeout: float = PUT_TIMEOUT,
        get_timeout: float | None = GET_TIMEOUT,
        *,
        ip: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        if style not in ("dict", "object"):
            raise InvalidArgument(f"style can only be 'dict' or 'object', not {style!r}")
        self.settings = settings if settings is not None else load_settings()
        self.ip = server if server is not None else ip
        if self.ip is None:
            self.ip = self.settings.database.server
        url = server_database_url(self.ip, self.settings.database.url)
        self.client = Client(url, settings=self.settings)
        self.style = style
        self.asynchronous = asynchronous
        self.put_timeout, self.get_timeout = put_timeout, get_timeout

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _out(self, value: Any) -> Any:
        return as_style(value, self.style)

    def queue_size(self) -> int:
        """v1's count of writes waiting for the server: there is never one here."""
        return 0

    # -- tasks --------------------------------------------------------------------------

    def task_create(
        self, command: str, name: str | None = None, status: str | None = None,
        batch: str | None = None, input: Any = None, output: str | None = None,
        container: str | None = None, container_options: str | None = "",
        resource: Any = None, required_task_ids: Sequence[int] | None = None,
        shell: bool | str = False, retry: int | None = None,
        download_timeout: float | None = None, run_timeout: float | None = None,
        use_cache: bool | None = None, asynchronous: bool = True,
    ) -> Any:  # fmt: skip
        """Create a task (v1's arguments); returns it. ``input`` and ``resource`` take
        several URIs separated by spaces, or a list; ``shell=True`` runs the command
        with ``sh -c``, ``shell='bash'`` with that shell."""
        if status is not None:
            check_v1_status(status, V1_TASK_STATUSES, "task")
        if status == V1_DEBUG:
            raise InvalidArgument("status 'debug' (v1's debug mode) does not exist in scitq v2")
        fields: dict[str, Any] = {
            "name": name, "inputs": split_uris(input, "input") or None,
            "resources": split_uris(resource, "resource") or None, "output": output,
            "container": container, "container_options": container_options or None,
            "depends_on": list(required_task_ids or []) or None, "retries": retry,
            "download_timeout_seconds": download_timeout, "run_timeout_seconds": run_timeout,
            "use_cache": use_cache or None,
        }  # fmt: skip
        if shell is True:
            fields["shell"] = True
        elif shell:
            command = shlex.join([str(shell), "-c", command])
        submitted = {key: value for key, value in fields.items() if value is not None}
        task = self.client.submit(command, batch=batch or DEFAULT_BATCH, **submitted)
        if status == TaskStatus.PAUSED:
            task_pause(self.client.connection, [task.id])
            task = self.client.get(task.id)
        return self._out(v1_task(task))

    def task_update(
        self, id: int, command: str | None = None, name: str | None = None,
        status: str | None = None, batch: str | None = None, input: Any = None,
        output: str | None = None, container: str | None = None,
        container_options: str | None = None, resource: Any = None,
        required_task_ids: Sequence[int] | None = None, retry: int | None = None,
        download_timeout: float | None = None, run_timeout: float | None = None,
        use_cache: bool | None = None, asynchronous: bool = True,
    ) -> Any:  # fmt: skip
        """Change a task's fields and status, as v1's ``PUT /tasks/<id>`` did.

        The fields given change in place (`Client.update` with ``rerun=False``: a running
        attempt goes on); then ``status='pending'`` runs the task again (a running one is
        killed first, a finished one, succeeded too, is rerun), ``paused`` pauses it and
        ``failed`` cancels it. Dependencies (``required_task_ids``) cannot change.
        """
        if required_task_ids is not None:
            raise InvalidArgument(
                f"task_update: scitq v2 cannot change the dependencies of submitted task {id}"
            )
        given = {"command": command, "name": name, "batch": batch,
                 "inputs": None if input is None else split_uris(input, "input"),
                 "output": output, "container": container,
                 "container_options": container_options,
                 "resources": None if resource is None else split_uris(resource, "resource"),
                 "retries": retry, "download_timeout_seconds": download_timeout,
                 "run_timeout_seconds": run_timeout, "use_cache": use_cache}  # fmt: skip
        changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        task = self.client.get(id)
        if changes:
            self.client.update([id], rerun=False, **changes)
        if status is not None:
            self._set_status(task, check_v1_status(status, V1_TASK_STATUSES, "task"))
        return self._out(v1_task(self.client.get(id)))

    def _set_status(self, task: Task, status: str) -> None:
        current = task.status
        if status == TaskStatus.PENDING:
            if current == TaskStatus.PAUSED:
                task_resume(self.client.connection, [task.id])
            elif current in FINAL_TASK_STATUSES or current in HELD_TASK_STATUSES:
                self.client.rerun([task.id])
        elif status == TaskStatus.PAUSED:
            task_pause(self.client.connection, [task.id])
        elif status == TaskStatus.FAILED:
            self.client.cancel([task.id], "set failed with task_update")
        elif status != TASK_STATUS_V1[current]:
            raise InvalidArgument(
                f"task_update: a task's status can be set to pending, paused or failed, "
                f"not {status!r}"
            )

    def task_get(self, id: int) -> Any:
        return self._out(v1_task(self.client.get(id)))

    def tasks(self, **args: Any) -> Any:
        """Tasks, filtered as v1 did: ``task_id`` (a list), ``status``, ``batch``, ``name``."""
        return self._out([v1_task(task) for task in self._tasks(args)])

    def _tasks(self, args: Mapping[str, Any]) -> list[Task]:
        unknown = sorted(set(args) - set(TASK_FILTERS))
        if unknown:
            raise InvalidArgument(
                f"unknown task filter {unknown[0]!r}: use {', '.join(TASK_FILTERS)}"
            )
        statuses: list[str] = []
        if args.get("status"):
            statuses = list(
                TASK_STATUSES_OF_V1[check_v1_status(args["status"], V1_TASK_STATUSES, "task")]
            )
            if not statuses:
                return []
        if args.get("task_id") is not None:
            ids = args["task_id"]
            ids = [ids] if isinstance(ids, int) else list(ids)
            found = task_list(self.client.connection, limit=max(len(ids), 1), task_ids=ids)
        else:
            name = args.get("name")
            pattern = None if name is None else _like_literal(name)
            try:
                found = list(self.client.tasks(batch=args.get("batch"), status=statuses or None,
                                               name=pattern))  # fmt: skip
            except NotFound:  # no such batch: v1 listed nothing
                return []
        return [task for task in found if _matches(task, args, statuses)]

    def task_status(self, task_id_list: Sequence[int]) -> list[str]:
        """The v1 status of each task, in the order of ``task_id_list``."""
        ids = list(task_id_list)
        found = {row["id"]: row["status"] for row in task_statuses(self.client.connection, ids)}
        missing = [task_id for task_id in ids if task_id not in found]
        if missing:
            raise NotFound(f"task {missing[0]} does not exist")
        return [TASK_STATUS_V1[found[task_id]] for task_id in ids]

    def task_delete(self, id: int, asynchronous: bool = True) -> Any:
        """Delete a task (and its executions); returns it as it was."""
        task = v1_task(self.client.get(id))
        task_delete(self.client.connection, [id])
        return self._out(task)

    def task_freeze(self, id: int, execution_id: int) -> Any:
        refuse("task_freeze", "agents read their task when they claim it")

    def join(
        self, task_list: Sequence[Any], retry: int = 1, check: bool = False,
        timeout: float | None = None, give_up_after: float | None = 120.0,
    ) -> dict[str, int]:  # fmt: skip
        """Wait for exactly these tasks, retrying failed ones up to ``retry`` times (v1).

        Prints v1's progress lines; returns the count of the tasks per v1 status. With
        ``check``, raises RuntimeError if some failed for good. ``timeout``: raise
        `scitq.errors.WaitTimeout` after that many seconds. ``give_up_after``: raise
        `scitq.errors.WaitStalled` once nothing could run them (no worker, none being
        deployed, no recruiter, or its deploys failing) for that many seconds.
        """
        return join_tasks(self, task_list, retry, check, timeout, give_up_after)

    # -- executions ---------------------------------------------------------------------

    def executions(self, **args: Any) -> Any:
        """Attempts, filtered as v1 did (``task_id``, ``status``, ``latest``, ``batch``,
        ``task_name``, ``limit``, ``reverse``, ``no_output``, ``trunc``), oldest first."""
        unknown = sorted(set(args) - set(EXECUTION_FILTERS))
        if unknown:
            raise InvalidArgument(
                f"unknown execution filter {unknown[0]!r}: use {', '.join(EXECUTION_FILTERS)}"
            )
        if args.get("status"):
            check_v1_status(args["status"], V1_EXECUTION_STATUSES, "execution")
        if args.get("execution_id") is not None:
            found = execution_get(self.client.connection, args["execution_id"])
            tasks = [] if found is None else [self.client.get(found.task_id)]
        else:
            filters = {"task_id": args.get("task_id"), "batch": args.get("batch"),
                       "name": args.get("task_name")}  # fmt: skip
            tasks = self._tasks({key: value for key, value in filters.items() if value is not None})
        workers = self._worker_ids()
        chosen: list[tuple[Execution, Task, bool]] = []
        for task in tasks:
            attempts = self.client.executions(task.id)
            for execution in attempts:
                latest = execution is attempts[-1]
                if args.get("latest") and not latest:
                    continue
                if args.get("execution_id") is not None and execution.id != args["execution_id"]:
                    continue
                chosen.append((execution, task, latest))
        chosen.sort(key=lambda item: item[0].id, reverse=bool(args.get("reverse")))
        rows = [v1_execution(e, t, workers, latest) for e, t, latest in chosen]
        rows = [row for row in rows if not args.get("status") or row["status"] == args["status"]]
        if args.get("limit"):
            rows = rows[: args["limit"]]
        if not args.get("no_output"):
            for row in rows:
                self._fill_output(row, args.get("trunc"))
        return self._out(rows)

    def _fill_output(self, row: dict[str, Any], trunc: int | None = None) -> None:
        task_id, attempt = row["task_id"], self._attempt(row["execution_id"])
        for key, stream in (("output", OutputStream.STDOUT), ("error", OutputStream.STDERR)):
            text = self.client.log(task_id, attempt=attempt, streams=[stream])
            row[key] = text[-trunc:] if trunc and len(text) > trunc else text

    def _attempt(self, execution_id: int) -> int:
        found = execution_get(self.client.connection, execution_id)
        if found is None:
            raise NotFound(f"execution {execution_id} does not exist")
        return found.attempt

    def _worker_ids(self) -> dict[str, int]:
        return {row["name"]: row["worker_id"] for row in worker_list(self.client.connection)}

    def execution_get(self, id: int) -> Any:
        found = execution_get(self.client.connection, id)
        if found is None:
            raise NotFound(f"execution {id} does not exist")
        task = self.client.get(found.task_id)
        latest = task.last_execution_id == found.id
        row = v1_execution(found, task, self._worker_ids(), latest)
        self._fill_output(row)
        return self._out(row)

    def execution_output(
        self, id: int, output: bool | None = None, error: bool | None = None,
        output_position: int | None = None, error_position: int | None = None,
    ) -> Any:  # fmt: skip
        """The output and error of an attempt from a position (the first character is 1)."""
        found = execution_get(self.client.connection, id)
        if found is None:
            raise NotFound(f"execution {id} does not exist")
        result: dict[str, str] = {}
        wanted = (("output", output, output_position, OutputStream.STDOUT),
                  ("error", error, error_position, OutputStream.STDERR))  # fmt: skip
        for key, include, position, stream in wanted:
            if include is False:
                continue
            text = self.client.log(found.task_id, attempt=found.attempt, streams=[stream])
            result[key] = text[max((position or 1) - 1, 0) :]
        return self._out(result)

    def execution_create(
        self,
        worker_id: int,
        task_id: int,
        status: str = "",
        command: str | None = None,
        asynchronous: bool = True,
    ) -> Any:
        refuse("execution_create", "agents claim tasks, which creates their executions")

    def execution_update(
        self,
        id: int,
        status: str | None = None,
        pid: str | None = None,
        return_code: int | None = None,
        output: str | None = None,
        error: str | None = None,
        output_files: str | None = None,
        command: str | None = None,
        freeze: bool = False,
        asynchronous: bool = True,
    ) -> Any:
        refuse("execution_update", "agents report their executions")

    def execution_output_write(self, id: int, output: str, asynchronous: bool = True) -> Any:
        refuse("execution_output_write", "agents write their tasks' output")

    def execution_error_write(self, id: int, error: str, asynchronous: bool = True) -> Any:
        refuse("execution_error_write", "agents write their tasks' output")

    # -- v1's REST verbs ----------------------------------------------------------------

    def get(self, url: str, wrap: Any = None, **args: Any) -> Any:
        refuse("get", "there is no REST server: call the methods of Server")

    def put(
        self, url: str, data: Any, asynchronous: bool | None = None, timeout: float | None = None
    ) -> Any:
        refuse("put", "there is no REST server: call the methods of Server")

    def post(
        self, url: str, data: Any, asynchronous: bool | None = None, timeout: float | None = None
    ) -> Any:
        refuse("post", "there is no REST server: call the methods of Server")

    def delete(
        self, url: str, asynchronous: bool | None = None, timeout: float | None = None
    ) -> Any:
        refuse("delete", "there is no REST server: call the methods of Server")


def _like_literal(text: str) -> str:
    """An ILIKE pattern matching ``text`` itself (exact case is checked after)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _matches(task: Task, args: Mapping[str, Any], statuses: Sequence[str]) -> bool:
    if args.get("name") is not None and task.name != args["name"]:
        return False
    if args.get("batch") is not None and task.batch != args["batch"]:
        return False
    return not statuses or task.status in statuses
