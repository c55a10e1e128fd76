"""Tasks: a filtered, keyset-paginated list; a task's page with every attempt, why it
waits, its resources and the output of an attempt that follows while it runs and pages
back through logs of any size; the task actions of ``scitq task``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    g,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from scitq.client.edit import update_tasks
from scitq.db.batch import batch_find
from scitq.db.execution import (
    execution_get,
    execution_output_before,
    execution_output_read,
    execution_output_tail,
)
from scitq.db.rows import Execution, LogChunk, Task
from scitq.db.task import (
    task_cancel,
    task_delete,
    task_dependencies,
    task_edits,
    task_executions,
    task_explain,
    task_list,
    task_page,
    task_pause,
    task_rerun,
    task_resume,
    task_retry,
)
from scitq.errors import InvalidArgument, NotFound, ScitqError
from scitq.states import FINAL_TASK_STATUSES, TaskStatus
from scitq.web.db import get_conn, get_report_conn
from scitq.web.htmx import is_htmx, render
from scitq.web.responses import DONE, acted, audit, go_to, refused

blueprint = Blueprint("tasks", __name__, url_prefix="/tasks")

PAGE_SIZE = 50
#: Output chunks read for one page of log, and the most text shown at once (a chunk is
#: at most 64 KiB): older output is one click away.
LOG_CHUNKS = 64
LOG_BYTES = 256 * 1024
#: Chunks read per query while a whole log is downloaded.
DOWNLOAD_CHUNKS = 200
ACTIONS: dict[str, Callable[[Any, Sequence[int]], Any]] = {
    "pause": task_pause,
    "resume": task_resume,
    "retry": task_retry,
    "rerun": task_rerun,
    "cancel": task_cancel,
    "delete": task_delete,
}


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise InvalidArgument(f"{name} must be a whole number, not {value!r}")
    return int(value)


def _name_pattern(text: str) -> str | None:
    """A name filter as an ILIKE pattern: ``%`` and ``_`` as typed, else a substring."""
    text = text.strip()
    if not text:
        return None
    return text if "%" in text or "_" in text else f"%{text}%"


@blueprint.get("/")
def index() -> Any:
    filters: dict[str, Any] = {
        "batch": request.args.get("batch", "").strip(),
        "status": [s for s in request.args.getlist("status") if s],
        "name": request.args.get("name", "").strip(),
        "worker": request.args.get("worker", "").strip(),
    }
    error = None
    tasks: list[Task] = []
    searched_to = None
    try:
        after = _int_arg("after")
        conn = get_report_conn()
        batch_id = None
        if filters["batch"]:
            found = batch_find(conn, str(filters["batch"]))
            if found is None:
                raise NotFound(f"batch {filters['batch']!r} does not exist")
            batch_id = int(found["id"])
        page = task_page(
            conn,
            limit=PAGE_SIZE + 1,  # one more: is there a next page?
            after=after,
            batch_id=batch_id,
            statuses=list(filters["status"]),
            name=_name_pattern(str(filters["name"])),
            worker=str(filters["worker"]) or None,
            bounded_name_search=True,
        )
        tasks, searched_to = page.tasks, page.searched_to
    except (InvalidArgument, NotFound) as exc:
        error = str(exc)
    more = len(tasks) > PAGE_SIZE
    tasks = tasks[:PAGE_SIZE]
    query: dict[str, Any] = {key: value for key, value in filters.items() if value}
    next_url = url_for("tasks.index", **query, after=tasks[-1].id) if more and tasks else None
    if next_url is None and searched_to is not None:
        next_url = url_for("tasks.index", **query, after=searched_to)
    return render(
        "tasks/index.html",
        "tasks/_results.html",
        tasks=tasks,
        filters=filters,
        statuses=tuple(TaskStatus),
        next_url=next_url,
        searched_to=searched_to,
        first_url=url_for("tasks.index", **query) if request.args.get("after") else None,
        error=error,
    ), (400 if error else 200)


def _task(task_id: int) -> Task:
    found = task_list(get_conn(), limit=1, task_ids=[task_id])
    if not found:
        abort(404, description=f"task {task_id} does not exist")
    return found[0]


def _summary_context(task_id: int) -> dict[str, Any]:
    conn = get_conn()
    task = _task(task_id)
    return {
        "task": task,
        "executions": task_executions(conn, task_id),
        "dependencies": task_dependencies(conn, task_id),
        "explanation": task_explain(conn, task_id),
        "edits": task_edits(conn, task_id),
        "is_final": task.status in FINAL_TASK_STATUSES,
    }


def _chosen(executions: Sequence[Execution], attempt: int | None) -> Execution | None:
    for execution in reversed(executions):
        if attempt is None or execution.attempt == attempt:
            return execution
    return None


def _bounded(chunks: list[LogChunk]) -> list[LogChunk]:
    """The newest chunks whose text fits in LOG_BYTES (at least one)."""
    kept: list[LogChunk] = []
    total = 0
    for chunk in reversed(chunks):
        total += len(chunk.text)
        if kept and total > LOG_BYTES:
            break
        kept.append(chunk)
    return kept[::-1]


@blueprint.get("/<int:task_id>")
def detail(task_id: int) -> str:
    """The task page; for htmx (re-polled until the task ends) its summary only."""
    context = _summary_context(task_id)
    if is_htmx():
        return render_template("tasks/_summary.html", **context)
    attempt = _int_arg("attempt")
    execution = _chosen(context["executions"], attempt)
    chunks: list[LogChunk] = []
    if execution is not None:
        chunks = _bounded(execution_output_tail(get_conn(), execution.id, limit=LOG_CHUNKS))
    return render_template(
        "tasks/detail.html",
        execution=execution,
        chunks=chunks,
        earlier=bool(chunks) and chunks[0].seq > 0,
        last_seq=chunks[-1].seq if chunks else -1,
        **context,
    )


def _execution_arg(task_id: int) -> Execution:
    execution_id = _int_arg("execution")
    execution = None if execution_id is None else execution_get(get_conn(), execution_id)
    if execution is None or execution.task_id != task_id:
        abort(404, description=f"task {task_id} has no such execution")
    return execution


@blueprint.get("/<int:task_id>/log")
def log_follow(task_id: int) -> str:
    """Output after ``after`` and, while the attempt is live, the element polling for more."""
    execution = _execution_arg(task_id)
    after = _int_arg("after")
    after = -1 if after is None else after
    conn = get_conn()
    # the status first: output written before the end is read below
    live = execution.is_live
    chunks = execution_output_read(conn, execution.id, after_seq=after, limit=LOG_CHUNKS)
    return render_template(
        "tasks/_log_follow.html",
        task_id=task_id,
        execution=execution,
        chunks=chunks,
        live=live,
        last_seq=chunks[-1].seq if chunks else after,
    )


@blueprint.get("/<int:task_id>/log/earlier")
def log_earlier(task_id: int) -> str:
    """Output just before ``before`` and, if there is more, the button for it."""
    execution = _execution_arg(task_id)
    before = _int_arg("before")
    if before is None:
        raise InvalidArgument("before is required")
    chunks = _bounded(
        execution_output_before(get_conn(), execution.id, before_seq=before, limit=LOG_CHUNKS)
    )
    return render_template(
        "tasks/_log_earlier.html",
        task_id=task_id,
        execution=execution,
        chunks=chunks,
        earlier=bool(chunks) and chunks[0].seq > 0,
    )


@blueprint.get("/<int:task_id>/output.txt")
def output_text(task_id: int) -> Response:
    """The whole output of one attempt (the last, or ``?attempt=N``) as a text download,
    streamed page by page: a log of any size, without holding it in memory."""
    executions = task_executions(get_conn(), task_id)
    execution = _chosen(executions, _int_arg("attempt"))
    if execution is None:
        abort(404, description=f"task {task_id} has no such attempt")

    def pages() -> Iterator[str]:
        after = -1
        while True:
            chunks = execution_output_read(
                get_conn(), execution.id, after_seq=after, limit=DOWNLOAD_CHUNKS
            )
            yield "".join(chunk.text for chunk in chunks)
            if len(chunks) < DOWNLOAD_CHUNKS:
                return
            after = chunks[-1].seq

    name = f"task-{task_id}-attempt-{execution.attempt}.txt"
    return Response(
        stream_with_context(pages()),
        mimetype="text/plain",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _edit_changes() -> dict[str, Any]:
    """The fields of the edit form (every field; task_update_v1 keeps those unchanged)."""
    form = request.form

    def text(field: str) -> str | None:
        return form.get(field, "").strip() or None

    def number(field: str, kind: Callable[[str], Any]) -> Any:
        value = text(field)
        try:
            return None if value is None else kind(value)
        except ValueError:
            what = field.replace("_", " ")
            raise InvalidArgument(f"{what} must be a number, not {value!r}") from None

    lines = {f: [x.strip() for x in form.get(f, "").splitlines() if x.strip()]
             for f in ("inputs", "resources")}  # fmt: skip
    return {
        "command": form.get("command", "").strip(), "name": text("name"),
        "container": text("container"), "container_options": text("container_options"),
        "output": text("output"), "retries": number("retries", int) or 0,
        "download_timeout_seconds": number("download_timeout_seconds", float),
        "run_timeout_seconds": number("run_timeout_seconds", float),
        "use_cache": form.get("use_cache") == "on", **lines,
    }  # fmt: skip


@blueprint.post("/<int:task_id>/edit")
def edit(task_id: int) -> Any:
    """The edit form (task_update_v1): what runs changed, the task runs again."""
    back = url_for("tasks.detail", task_id=task_id)
    rerun = {"auto": None, "yes": True, "no": False}.get(request.form.get("rerun", "auto"))
    try:
        _task(task_id)
        done = update_tasks(get_conn(), [task_id], _edit_changes(), rerun, by=g.user["name"])
    except ScitqError as error:
        return refused(error, back)
    status, again = done[task_id]
    audit("edit", f"task {task_id}")
    message = f"task {task_id} updated: now {status}" + (", runs again" if again else "")
    return acted(
        message, back, lambda: render_template("tasks/_summary.html", **_summary_context(task_id))
    )


@blueprint.post("/<int:task_id>/<action>")
def act(task_id: int, action: str) -> Any:
    if action not in ACTIONS:
        abort(404)
    back = url_for("tasks.detail", task_id=task_id)
    try:
        result = ACTIONS[action](get_conn(), [task_id])
    except ScitqError as error:
        return refused(error, back)
    changed = result if isinstance(result, int) else len(result)
    if not changed:
        task = _task(task_id)
        return refused(
            InvalidArgument(f"task {task_id} is {task.status}: nothing to {action}"), back
        )
    audit(action, f"task {task_id}")
    message = f"task {task_id} {DONE[action]}"
    if action == "delete":
        return go_to(url_for("tasks.index"), message)
    return acted(
        message, back, lambda: render_template("tasks/_summary.html", **_summary_context(task_id))
    )
