"""Wrappers of the named queries about tasks (``queries/task.sql``), and the task page.

Submission and the state changes of users, the agent's claim, and the reads: keyset
pages of tasks (`task_page`), detail, dependencies, attempts and `task_explain`. ``now``
is for tests and administrators: agents' calls act at the server's time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from scitq import errors
from scitq.db.explain import explanation
from scitq.db.query import (
    Connection,
    Params,
    count,
    named_query,
    one_row,
    optional_row,
    rows,
    rows_of,
)
from scitq.db.rows import Dependency, Execution, Task, TaskPage
from scitq.states import TaskStatus

#: Ids looked at in id order before a filtered page turns to the filters' indexes.
PAGE_SCAN_BUDGET = 20_000
#: Task ids a bounded name search looks through per page: the name has no index, and a
#: substring of it cannot use one, so such a search goes through the ids window by window.
NAME_SCAN_BUDGET = 100_000


# -- changes ------------------------------------------------------------------------------


def _unstorable_text(error: errors.ScitqError, params: Params) -> errors.ScitqError | None:
    """An error naming the first task field with text PostgreSQL cannot store, if any.

    PostgreSQL refuses NUL and lone surrogates while parsing the JSON, before the function
    can name the field: they are looked for here, on this error path only.
    """
    if not isinstance(error, errors.InvalidArgument):
        return None

    def texts(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            for key, item in value.items():
                yield from texts(key)
                yield from texts(item)
        elif isinstance(value, list | tuple):
            for item in value:
                yield from texts(item)

    for position, task in enumerate(json.loads(params["tasks"]), start=1):
        for field, value in task.items():
            for text in texts(value):
                if "\x00" in text:
                    return errors.InvalidArgument(
                        f"task #{position}: {field} contains a NUL character"
                    )
                try:
                    text.encode()
                except UnicodeEncodeError:
                    return errors.InvalidArgument(
                        f"task #{position}: {field} is not valid UTF-8 text"
                    )
    return None


@named_query(rows, refine=_unstorable_text)
def task_submit(
    batch: str, tasks: Sequence[Mapping[str, Any]], now: datetime | None = None
) -> Params:
    """Submit tasks (dicts of task fields, see task_submit_v1) to a batch."""
    return {"batch": batch, "tasks": json.dumps(list(tasks)), "now": now}


@named_query(rows)
def task_pause(task_ids: Iterable[int], now: datetime | None = None) -> Params:
    return {"task_ids": list(task_ids), "now": now}


@named_query(rows)
def task_resume(task_ids: Iterable[int], now: datetime | None = None) -> Params:
    return {"task_ids": list(task_ids), "now": now}


@named_query(rows)
def task_cancel(
    task_ids: Iterable[int], reason: str = "canceled by user", now: datetime | None = None
) -> Params:
    return {"task_ids": list(task_ids), "reason": reason, "now": now}


@named_query(rows)
def task_retry(task_ids: Iterable[int], now: datetime | None = None) -> Params:
    return {"task_ids": list(task_ids), "now": now}


@named_query(count)
def task_delete(task_ids: Iterable[int], now: datetime | None = None) -> Params:
    return {"task_ids": list(task_ids), "now": now}


@named_query(count)
def task_signal(task_ids: Iterable[int], kind: str, now: datetime | None = None) -> Params:
    return {"task_ids": list(task_ids), "kind": kind, "now": now}


@named_query(rows)
def task_claim(worker_id: int, limit: int, now: datetime | None = None) -> Params:
    """Claim up to ``limit`` runnable tasks of the worker's batches (the agent's call)."""
    return {"worker_id": worker_id, "limit": limit, "now": now}


@named_query(rows)
def task_update(
    task_ids: Iterable[int],
    changes: Mapping[str, Any],
    rerun: bool | None = None,
    by: str | None = None,
    now: datetime | None = None,
) -> Params:
    """Edit tasks (see task_update_v1); rows ``id``, ``status``, ``rerun``."""
    return {"task_ids": list(task_ids), "changes": json.dumps(dict(changes)), "rerun": rerun,
            "by": by, "now": now}  # fmt: skip


@named_query(rows)
def task_rerun(task_ids: Iterable[int], now: datetime | None = None) -> Params:
    """Run finished (or held) tasks again; rows ``id``, ``status`` of those rerun."""
    return {"task_ids": list(task_ids), "now": now}


# -- reads --------------------------------------------------------------------------------


@named_query(optional_row)
def task_get(task_id: int) -> Params:
    """The row of ``scitq.task_overview`` of a task, or None."""
    return {"task_id": task_id}


@named_query(rows_of(Task), prepare=False)
def task_list(
    *,
    limit: int,
    after: int | None = None,
    upto: int | None = None,
    task_ids: Sequence[int] | None = None,
    batch_id: int | None = None,
    statuses: Sequence[str] | None = None,
    name: str | None = None,
    since: datetime | None = None,
    worker: str | None = None,
    by_id: bool = True,
) -> Params:
    """One page of tasks in id order after ``after`` (see the query for the filters).

    ``name`` is an ILIKE pattern; ``worker`` a worker name (any attempt). ``upto`` looks
    only up to that id (the end of a `task_window`); ``by_id=False`` lets PostgreSQL find
    the rows through the filters' indexes and sort them (the two phases of `task_page`).
    """
    return {
        "upto": upto,
        "by_id": by_id,
        "limit": limit,
        "after": after,
        "task_ids": None if task_ids is None else list(task_ids),
        "batch_id": batch_id,
        "statuses": None if not statuses else list(statuses),
        "name": name,
        "since": since,
        "worker": worker,
    }


@named_query(one_row, prepare=False)
def task_window(after: int | None, scan_budget: int) -> Params:
    """The next ``scan_budget`` ids after ``after``: ``upto`` (the last, or None), ``ids``."""
    return {"after": after, "scan_budget": scan_budget}


@named_query(rows, prepare=False)
def task_ids_by_name(
    *,
    after: int | None,
    upto: int,
    name: str,
    limit: int,
    statuses: Sequence[str] | None = None,
    worker: str | None = None,
) -> Params:
    """The ids (rows ``id``) of tasks whose name matches in the ids (after, upto]."""
    return {"after": after, "upto": upto, "name": name, "limit": limit,
            "statuses": list(statuses or ()) or None, "worker": worker}  # fmt: skip


def check_task_statuses(statuses: Iterable[str]) -> None:
    """Refuse a status that is no task status (`InvalidArgument`)."""
    unknown = sorted(set(statuses) - set(TaskStatus))
    if unknown:
        raise errors.InvalidArgument(
            f"unknown task status {', '.join(unknown)}: use {', '.join(TaskStatus)}"
        )


def task_page(
    conn: Connection,
    *,
    limit: int,
    after: int | None = None,
    batch_id: int | None = None,
    statuses: Sequence[str] = (),
    name: str | None = None,
    since: datetime | None = None,
    worker: str | None = None,
    bounded_name_search: bool = False,
) -> TaskPage:
    """One page of tasks in id order after ``after``, fast on millions of tasks.

    A filtered page first looks among the next PAGE_SCAN_BUDGET ids only, then lets the
    filters' indexes find the rows (see the query ``task_list``), so that both dense and
    rare matches are fast. With ``bounded_name_search`` (the dashboard), a name pattern
    alone, which has no index, is looked for in the next NAME_SCAN_BUDGET ids at most, and
    the page says where the search stopped.
    """
    check_task_statuses(statuses)
    filters: dict[str, Any] = {
        "batch_id": batch_id, "statuses": list(statuses), "name": name, "since": since,
        "worker": worker,
    }  # fmt: skip
    if not any(filters.values()):
        return TaskPage(task_list(conn, limit=limit, after=after))
    if not bounded_name_search or name is None or batch_id is not None or since is not None:
        # matching rows may be dense right after `after`: a bounded look first, then the
        # filters' indexes (a name within a batch uses task_batch_id_name_idx)
        window = task_window(conn, after, PAGE_SCAN_BUDGET)
        if window["upto"] is None:
            return TaskPage([])  # no task after `after`
        found = task_list(conn, limit=limit, after=after, upto=window["upto"], **filters)
        if len(found) == limit:
            return TaskPage(found)
        return TaskPage(task_list(conn, limit=limit, after=after, by_id=False, **filters))
    # a name alone: look through the next NAME_SCAN_BUDGET ids, bounds given as values
    window = task_window(conn, after, NAME_SCAN_BUDGET)
    if window["upto"] is None:
        return TaskPage([])
    upto = int(window["upto"])
    matches = task_ids_by_name(
        conn, after=after, upto=upto, name=name, limit=limit, statuses=statuses, worker=worker
    )
    ids = [int(row["id"]) for row in matches]
    tasks = task_list(conn, limit=limit, task_ids=ids) if ids else []
    if len(ids) == limit or window["ids"] < NAME_SCAN_BUDGET:
        return TaskPage(tasks)  # a full page, or the window reached the last task
    return TaskPage(tasks, searched_to=upto)


@named_query(rows, prepare=False)
def task_statuses(task_ids: Iterable[int]) -> Params:
    """Rows ``id``, ``status``, ``cancel_reason`` of the existing tasks among ``task_ids``."""
    return {"task_ids": list(task_ids)}


@named_query(rows_of(Dependency), prepare=False)
def task_dependencies(task_id: int) -> Params:
    return {"task_id": task_id}


@named_query(rows_of(Execution), prepare=False)
def task_executions(task_id: int) -> Params:
    """Every attempt of a task, oldest first."""
    return {"task_id": task_id}


@named_query(rows, prepare=False)
def task_edits(task_id: int) -> Params:
    """The edits of a task, oldest first: rows ``at``, ``by``, ``fields``."""
    return {"task_id": task_id}


@named_query(explanation, prepare=False)
def task_explain(task_id: int) -> Params:
    """Why a task is (not) running, or None if it does not exist."""
    return {"task_id": task_id}
