"""The Python API: submit tasks, query them, follow their output, wait for batches.

    from scitq import Client

    with Client() as client:  # settings as for the CLI; no database configured: embedded
        task = client.submit(["echo", "hello world"], batch="demo", retries=2)
        client.wait("demo", progress=lambda p: print(p.done, "/", p.total))
        print(client.log(task.id))

A `Client` holds one connection and is not thread-safe: use one per thread. Results are
frozen dataclasses; errors are `scitq.errors.ScitqError` subclasses.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Self

from scitq.client.edit import TaskEdits
from scitq.config import Settings, TransferSettings, load_settings
from scitq.db.batch import batch_find
from scitq.db.completion import EndedTasks
from scitq.db.connection import Connection, Reopening
from scitq.db.execution import execution_get, execution_output_read, execution_output_tail
from scitq.db.explain import StallWatch
from scitq.db.pooler import fit_for_pooler
from scitq.db.recruitment import instance_request
from scitq.db.report import batch_progress
from scitq.db.rows import (
    BatchProgress,
    Dependency,
    Deployed,
    Execution,
    Explanation,
    LogChunk,
    Submitted,
    Task,
    as_dict,
    from_row,
)
from scitq.db.task import (
    check_task_statuses,
    task_cancel,
    task_dependencies,
    task_executions,
    task_explain,
    task_list,
    task_page,
    task_retry,
    task_submit,
)
from scitq.embedded import conninfo_for, read_conninfos
from scitq.errors import InvalidArgument, NotFound, WaitTimeout
from scitq.states import FINAL_TASK_STATUSES, OutputStream, TaskStatus
from scitq.transfer import check_task_uris

__all__ = ["BatchProgress", "Client", "Dependency", "Deployed", "Execution", "Explanation",
           "LogChunk", "Submitted", "Task", "WaitTimeout", "as_dict"]  # fmt: skip

#: The batch of tasks submitted without one (as in scitq v1).
DEFAULT_BATCH = "Default"
#: Tasks per `task_submit_v1` call in `Client.submit_many`.
SUBMIT_CHUNK = 5000
OUTPUT_STREAMS = tuple(OutputStream)
#: Task fields accepted by submit (task_submit_v1).
TASK_FIELDS = frozenset({
    "command", "name", "shell", "container", "container_options", "inputs", "resources", "output",
    "retries", "requeues", "retry_delay_seconds", "download_timeout_seconds", "use_cache", "env",
    "run_timeout_seconds", "priority", "tags", "depends_on", "depends_on_names"})  # fmt: skip


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class Client(TaskEdits):
    """A connection to scitq's database with the operations of the ``scitq`` CLI.

    The connection is reopened after it broke (a restart, a failover); `wait` and
    followed logs outlast the outage (docs/operations.md, multi-host URLs).

    Args:
        database_url: a PostgreSQL URI or conninfo; None uses the settings
            (``SCITQ_DATABASE_URL``, the configuration file, else the embedded server).
        settings: settings to use instead of `scitq.config.load_settings`.
        read_only: read from ``[database] read_url`` if set and up, else the primary.
    """

    def __init__(
        self, database_url: str | None = None, *, settings: Settings | None = None,
        read_only: bool = False,
    ) -> None:  # fmt: skip
        settings = settings if settings is not None else load_settings()
        if database_url is not None:
            settings = settings.with_database_url(database_url)
        self.settings = settings
        db = settings.database
        conninfos = read_conninfos(db) if read_only else [conninfo_for(db)]
        configure = fit_for_pooler if db.url or db.read_url else None  # embedded: no pooler
        self._link = Reopening(conninfos, db.application_name, configure=configure)
        self._link.get()  # a clear error now if the database is unreachable

    @property
    def connection(self) -> Connection:
        return self._link.get()  # a new one once the previous broke

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- submitting ---------------------------------------------------------------------

    def submit(
        self, command: str | Sequence[str], *, batch: str = DEFAULT_BATCH, **fields: Any
    ) -> Task:
        """Submit one task and return it.

        Args:
            command: a command line, or its words (joined with shell quoting).
            batch: the batch, created if needed.
            **fields: other task fields of `task_submit_v1` (``name``, ``shell``,
                ``container``, ``inputs``, ``retries``, ``env``, ``depends_on`` (ids or
                tasks), ...).
        """
        task = {**fields, "command": command if isinstance(command, str) else shlex.join(command)}
        submitted = self.submit_many(batch, [task])
        return self.get(submitted[0].id)

    def submit_many(
        self, batch: str, tasks: Iterable[Mapping[str, Any]], *, chunk_size: int = SUBMIT_CHUNK
    ) -> list[Submitted]:
        """Submit tasks (dicts of task fields) to one batch, all or none.

        The tasks go in calls of ``chunk_size`` inside one transaction; errors name a
        task by its position in ``tasks`` (``task #1`` is the first).
        """
        if chunk_size < 1:
            raise InvalidArgument(f"chunk_size must be 1 or more, not {chunk_size}")
        submitted: list[Submitted] = []
        chunk: list[dict[str, Any]] = []
        with self.connection.transaction():
            for position, task in enumerate(tasks, start=1):
                chunk.append(_task_fields(task, position, self.settings.transfer))
                if len(chunk) == chunk_size:
                    submitted += self._submit_chunk(batch, chunk, len(submitted))
                    chunk = []
            if chunk:
                submitted += self._submit_chunk(batch, chunk, len(submitted))
        if not submitted:
            raise InvalidArgument("no task to submit")
        return submitted

    def _submit_chunk(
        self, batch: str, chunk: list[dict[str, Any]], offset: int
    ) -> list[Submitted]:
        try:
            rows = task_submit(self.connection, batch, chunk)
        except (InvalidArgument, NotFound) as error:  # messages name tasks by position
            if offset == 0:
                raise
            renumbered = re.sub(r"task #(\d+)", lambda m: f"task #{int(m[1]) + offset}", str(error))
            raise type(error)(renumbered) from error
        return [from_row(Submitted, row) for row in rows]

    # -- reading ------------------------------------------------------------------------

    def get(self, task_id: int) -> Task:
        """One task; `NotFound` if it does not exist."""
        found = task_list(self.connection, limit=1, task_ids=[task_id])
        if not found:
            raise NotFound(f"task {task_id} does not exist")
        return found[0]

    def page(
        self,
        *,
        limit: int = 100,
        after: int | None = None,
        batch: str | None = None,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        worker: str | None = None,
        since: datetime | None = None,
    ) -> list[Task]:
        """Up to ``limit`` tasks in id order, with ids above ``after``.

        Args:
            batch: only this batch (`NotFound` if there is none of that name).
            status: one status or several.
            name: a case-insensitive LIKE pattern (``%`` any text, ``_`` one character).
            worker: only tasks with an attempt on this worker (by name).
            since: only tasks created at or after this time.
        """
        if limit < 1:
            raise InvalidArgument(f"the limit must be 1 or more, not {limit}")
        statuses = [status] if isinstance(status, str) else list(status or ())
        check_task_statuses(statuses)
        batch_id = None if batch is None else self.batch_id(batch)
        page = task_page(
            self.connection, limit=limit, after=after, batch_id=batch_id, statuses=statuses,
            name=name, since=since, worker=worker,
        )  # fmt: skip
        return page.tasks

    def tasks(
        self, *, limit: int | None = None, after: int | None = None, page_size: int = 1000,
        **filters: Any,
    ) -> Iterator[Task]:  # fmt: skip
        """Every task matching the filters of `page`, in id order, page by page."""
        left = limit
        while left is None or left > 0:
            size = page_size if left is None else min(page_size, left)
            found = self.page(limit=size, after=after, **filters)
            yield from found
            if len(found) < size:
                return
            after = found[-1].id
            left = None if left is None else left - len(found)

    def batch_id(self, batch: str) -> int:
        row = batch_find(self.connection, batch)
        if row is None:
            raise NotFound(f"batch {batch!r} does not exist")
        return int(row["id"])

    def batch_exists(self, batch: str) -> bool:
        return batch_find(self.connection, batch) is not None

    def executions(self, task_id: int) -> list[Execution]:
        """Every attempt of a task, oldest first."""
        return task_executions(self.connection, task_id)

    def dependencies(self, task_id: int) -> list[Dependency]:
        """The tasks this task depends on."""
        return task_dependencies(self.connection, task_id)

    def batches(self) -> list[BatchProgress]:
        return [from_row(BatchProgress, row) for row in batch_progress(self.connection)]

    def progress(self, batch: str) -> BatchProgress:
        rows = batch_progress(self.connection, batch)
        if not rows:
            raise NotFound(f"batch {batch!r} does not exist")
        return from_row(BatchProgress, rows[0])

    # -- acting -------------------------------------------------------------------------

    def retry(self, task_ids: Iterable[int]) -> dict[int, str]:
        """Retry failed or canceled tasks; returns the new status of every task restored."""
        return {r["id"]: r["status"] for r in task_retry(self.connection, task_ids)}

    def cancel(self, task_ids: Iterable[int], reason: str = "canceled by user") -> dict[int, str]:
        """Cancel tasks that have not ended; returns those canceled."""
        rows = task_cancel(self.connection, task_ids, reason)
        return {r["id"]: r["status"] for r in rows}

    def wait(
        self,
        batch: str,
        *,
        timeout: float | None = None,
        interval: float = 1.0,
        progress: Callable[[BatchProgress], None] | None = None,
        explain_after: float | None = 30.0,
        unserved_timeout: float | None = 600.0,
        on_stall: Callable[[str], None] | None = None,
    ) -> BatchProgress:
        """Wait until no task of the batch is left to run; returns the final counts.

        ``progress`` is called with the counts at every poll. Raises `WaitTimeout` after
        ``timeout`` seconds. Failed or canceled tasks end the wait like succeeded ones:
        look at ``failed`` and ``canceled`` in the result. Reads the counts every
        ``interval`` s and at once when the batch ends (LISTEN), never busy more than a
        tenth of the time (`scitq.db.completion.EndedTasks.pause`).

        Never silent for long: after ``explain_after`` s without change it says why to
        ``on_stall`` (or logs a warning): `explain` of its first runnable task. It raises
        `WaitStalled` when no worker could serve it for ``unserved_timeout`` s (None: off).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        watch = StallWatch(batch, explain_after, unserved_timeout, on_stall)
        with EndedTasks(lambda: self.connection, self.batch_id(batch)) as ended:
            while True:
                # outlasting: the read waits an outage out (a restart, a failover)
                current = self._link.outlasting(lambda: ended.timed(self.progress, batch), deadline)
                if progress is not None:
                    progress(current)
                if current.remaining == 0:
                    return current
                watch.check(current, time.monotonic(), lambda: self._why(batch))
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    tasks = _plural(current.remaining, "task")
                    raise WaitTimeout(
                        f"batch {batch!r} still has {tasks} to run after {timeout:g} s"
                    )
                ended.pause(interval, left)

    def _why(self, batch: str) -> Explanation | None:
        """Why the first task of the batch that could run next does not run."""
        for status in (TaskStatus.PENDING, TaskStatus.WAITING, TaskStatus.PAUSED):
            if found := self.page(limit=1, batch=batch, status=status):
                return self.explain(found[0].id)
        return None

    def deploy(
        self,
        number: int,
        *,
        batch: str,
        provider: str,
        flavor: str | None = None,
        region: str | None = None,
        image: str | None = None,
        concurrency: int = 1,
        prefetch: int = 0,
        permanent: bool = False,
    ) -> list[Deployed]:
        """Ask for ``number`` workers for ``batch`` now (v1's ``worker_deploy``): the active
        scheduler creates them through the provider (``local``, ``openstack``, or one named
        in the configuration: one it cannot serve is refused here); they are destroyed once
        idle, like recruited workers, unless ``permanent``. Returns the instances asked for.
        """
        self.settings.scheduler.providers.check_deploy(provider, flavor, region, image)
        rows = instance_request(
            self.connection, provider, batch, number, concurrency=concurrency,
            prefetch=prefetch, flavor=flavor, image=image, region=region,
            is_permanent=permanent,
        )  # fmt: skip
        return [Deployed(row["instance_id"], row["operation_id"], row["name"]) for row in rows]

    # -- output -------------------------------------------------------------------------

    def log(self, task_id: int, *, attempt: int | None = None, streams: Sequence[str] = ()) -> str:
        """The output of one attempt (the last by default) as text; "" if it never ran."""
        chunks = self.log_chunks(task_id, attempt=attempt, streams=streams)
        return "".join(chunk.text for chunk in chunks)

    def log_chunks(
        self,
        task_id: int,
        *,
        attempt: int | None = None,
        streams: Sequence[str] = (),
        tail: int | None = None,
        follow: bool = False,
        interval: float = 1.0,
    ) -> Iterator[LogChunk]:
        """The output chunks of one attempt (the last by default), in order.

        Args:
            streams: only these streams (``stdout``, ``stderr``, ``scitq``); all by default.
            tail: start with the last ``tail`` chunks only.
            follow: keep polling for new output until the attempt ends; when the task has
                not started yet, first wait for its attempt.
        """
        unknown = sorted(set(streams) - set(OUTPUT_STREAMS))
        if unknown:
            raise InvalidArgument(f"unknown stream {', '.join(unknown)}: use stdout, stderr, scitq")
        execution = self._log_execution(task_id, attempt, follow, interval)
        if execution is None:
            return
        after = -1
        if tail is not None:
            chunks = execution_output_tail(
                self.connection, execution.id, limit=tail, streams=streams
            )
            yield from chunks
            after = chunks[-1].seq if chunks else after
            if not follow:
                return
        page = 1000
        while True:
            # read the status before the output: what was written before the end is drained
            ended = (
                not follow
                or not self._link.outlasting(lambda: self._execution(execution.id)).is_live
            )
            while True:
                chunks = self._link.outlasting(lambda: execution_output_read(
                    self.connection, execution.id, after_seq=after, streams=streams, limit=page  # noqa: B023
                ))  # fmt: skip
                yield from chunks
                if chunks:
                    after = chunks[-1].seq
                if len(chunks) < page:
                    break
            if ended:
                return
            time.sleep(interval)

    def _execution(self, execution_id: int) -> Execution:
        execution = execution_get(self.connection, execution_id)
        if execution is None:  # deleted with its task meanwhile
            raise NotFound(f"execution {execution_id} does not exist any more")
        return execution

    def _log_execution(
        self, task_id: int, attempt: int | None, follow: bool, interval: float
    ) -> Execution | None:
        while True:
            task = self.get(task_id)
            executions = self.executions(task_id)
            chosen = [e for e in executions if attempt is None or e.attempt == attempt]
            if chosen:
                return chosen[-1]
            reachable = attempt is None or attempt > task.attempt_count
            if not follow or task.status in FINAL_TASK_STATUSES or not reachable:
                if attempt is not None and not (follow and reachable):
                    raise NotFound(
                        f"task {task_id} has no attempt {attempt} "
                        f"({_plural(task.attempt_count, 'attempt')} so far)"
                    )
                return None
            time.sleep(interval)

    # -- explain ------------------------------------------------------------------------

    def explain(self, task_id: int) -> Explanation:
        """Why a task is not running (or what it is doing)."""
        explanation = task_explain(self.connection, task_id)
        if explanation is None:
            raise NotFound(f"task {task_id} does not exist")
        return explanation


def _task_fields(task: Mapping[str, Any], position: int, store: TransferSettings) -> dict[str, Any]:
    unknown = sorted(set(task) - TASK_FIELDS)
    if unknown:
        raise InvalidArgument(
            f"task #{position} has an unknown field {unknown[0]!r}: "
            f"use {', '.join(sorted(TASK_FIELDS))}"
        )
    fields = dict(task)
    if "depends_on" in fields:  # tasks may be given for their ids
        fields["depends_on"] = [getattr(dep, "id", dep) for dep in fields["depends_on"]]
    for key in ("inputs", "resources", "tags", "depends_on_names"):
        if isinstance(fields.get(key), tuple):
            fields[key] = list(fields[key])
    check_task_uris(fields, f"task #{position}", store)  # rclone remotes: the settings' own
    return fields
