"""``scitq task``: list, show, log, explain, retry, cancel, pause, resume and delete tasks
(update and rerun: `scitq.cli.task_edit`)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import click
from rich.table import Table

from scitq.cli import CliState, console, pass_state
from scitq.cli.options import output_options
from scitq.cli.output import (
    Column,
    cell,
    format_bytes,
    format_seconds,
    jsonable,
    open_client,
    print_csv,
    print_json,
    print_json_array,
    print_table,
)
from scitq.client import Client, Task, as_dict
from scitq.db.task import task_delete, task_pause, task_resume, task_statuses
from scitq.errors import InvalidArgument, InvalidTransition, NotFound
from scitq.states import HELD_TASK_STATUSES, TaskStatus

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Task statuses with a live execution.
LIVE = HELD_TASK_STATUSES


def parse_since(text: str) -> datetime:
    """``30m``, ``2h``, ``1d``, ``1w`` ago, or an ISO date or time (local if no zone)."""
    match = _DURATION.match(text.strip())
    if match:
        return datetime.now().astimezone() - timedelta(
            seconds=float(match[1]) * _UNIT_SECONDS[match[2]]
        )
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(
            f"--since {text!r}: give a time ago (30m, 2h, 1d, 1w) or a date (2024-05-02T10:00)"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def parse_ids(values: Iterable[str]) -> list[int]:
    """Task ids from arguments such as ``12``, ``12,14`` or ``12-20``."""
    ids: list[int] = []
    for value in values:
        for part in filter(None, value.split(",")):
            first, dash, last = part.strip().partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise InvalidArgument(f"invalid task id {part!r}: use 12, 12,14 or 12-20")
            ids.extend(range(int(first), int(last or first) + 1))
    return sorted(set(ids))


# -- task list ----------------------------------------------------------------------------

TASK_COLUMNS: list[Column] = [
    ("ID", lambda t: t.id), ("BATCH", lambda t: t.batch), ("NAME", lambda t: t.name),
    ("STATUS", lambda t: t.status), ("TRIES", lambda t: t.attempt_count),
    ("WORKER", lambda t: t.worker_name), ("RC", lambda t: t.return_code),
    ("CHANGED", lambda t: t.status_changed_at),
    ("COMMAND", lambda t: t.command if len(t.command) <= 60 else t.command[:59] + "…"),
]  # fmt: skip
TASK_CSV_FIELDS = [field for field in Task.__dataclass_fields__]


@click.group()
def task() -> None:
    """Inspect and act on tasks: list, show, log, explain, update, rerun, retry, delete."""


@task.command("list")
@click.option("-b", "--batch", help="Only this batch.")
@click.option(
    "-s", "--status", "statuses", multiple=True,
    type=click.Choice([status.value for status in TaskStatus]),
    help="Only this status (repeat for several).",
)  # fmt: skip
@click.option("-n", "--name", help="Name pattern, case-insensitive LIKE: % any text, _ one char.")
@click.option("-w", "--worker", help="Only tasks with an attempt on this worker.")
@click.option("--since", help="Created since: 30m, 2h, 1d, 1w ago, or a date/time.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="Page size.")
@click.option("--after", type=int, help="Start after this task id (the next page).")
@click.option("--all", "all_pages", is_flag=True, help="Every matching task, page after page.")
@output_options
@pass_state
def list_tasks(
    state: CliState,
    batch: str | None,
    statuses: tuple[str, ...],
    name: str | None,
    worker: str | None,
    since: str | None,
    limit: int,
    after: int | None,
    all_pages: bool,
    as_json: bool,
    as_csv: bool,
) -> None:
    """List tasks in id order, one page at a time.

    Pages are read by id (keyset pagination): `--after ID` gives the page after the task
    ID, and stays fast on millions of tasks. The table says how to get the next page.

    Exit codes: 0; 2 invalid option; 3 database unreachable; 4 unknown batch.
    """
    filters: dict[str, Any] = {
        "batch": batch, "status": statuses, "name": name, "worker": worker,
        "since": None if since is None else parse_since(since),
    }  # fmt: skip
    with open_client(state, read_only=True) as client:
        if all_pages:
            found: Iterable[Task] = client.tasks(after=after, page_size=1000, **filters)
            more = False
        else:
            page = client.page(limit=limit + 1, after=after, **filters)
            found, more = page[:limit], len(page) > limit
        if as_json:
            print_json_array(as_dict(t) for t in found)
        elif as_csv:
            print_csv((as_dict(t) for t in found), TASK_CSV_FIELDS)
        else:
            shown = list(found)
            print_table(shown, TASK_COLUMNS)
            if more:
                click.echo(f"more tasks: add --after {shown[-1].id} for the next page")


# -- task show ----------------------------------------------------------------------------

EXECUTION_COLUMNS: list[Column] = [
    ("ATTEMPT", lambda e: e.attempt), ("STATUS", lambda e: e.status),
    ("WORKER", lambda e: e.worker_name), ("ASSIGNED", lambda e: e.assigned_at),
    ("FINISHED", lambda e: e.finished_at), ("WALL", lambda e: format_seconds(e.wall_seconds)),
    ("RC", lambda e: e.return_code), ("FAILURE", lambda e: e.failure_class),
    ("REASON", lambda e: e.failure_reason),
    ("CACHE", lambda e: e.cached_from_execution_id and f"hit: {e.cached_from_execution_id}"),
]  # fmt: skip


@task.command()
@click.argument("task_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def show(state: CliState, task_id: int, as_json: bool) -> None:
    """Show a task: its fields, dependencies and every attempt.

    Exit codes: 0; 3 database unreachable; 4 unknown task.
    """
    with open_client(state, read_only=True) as client:
        found = client.get(task_id)
        dependencies = client.dependencies(task_id)
        executions = client.executions(task_id)
        edits = client.edits(task_id)
    if as_json:
        deps = [as_dict(d) for d in dependencies]
        attempts = [as_dict(e) for e in executions]
        print_json({**as_dict(found), "dependencies": deps, "executions": attempts,
                    "edits": edits})  # fmt: skip
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in as_dict(found).items():
        if value not in (None, (), {}, []):
            grid.add_row(key, cell(_shown(key, value)))
    for dep in dependencies:
        grid.add_row("dependency", cell(f"task {dep.id} {dep.name or ''} ({dep.status})"))
    out = console()
    out.print(grid)
    if executions:
        print_table(executions, EXECUTION_COLUMNS, title="attempts")
    for edit in edits:  # task_update_v1's, oldest first
        changed = ", ".join(f"{k} {json.dumps(v['from'])} -> {json.dumps(v['to'])}"
                            for k, v in edit["fields"].items())  # fmt: skip
        out.print(cell(f"edited {edit['at']:%Y-%m-%d %H:%M:%S} by {edit['by']}: {changed}"))


def _shown(key: str, value: Any) -> Any:
    """A field of `task show` for people: durations and sizes with their units."""
    if isinstance(value, dict):
        return json.dumps(value)
    if key.endswith("_seconds") and isinstance(value, int | float):
        return format_seconds(value)
    if key.endswith("_bytes") and isinstance(value, int):
        return format_bytes(value)
    return value


# -- task log -----------------------------------------------------------------------------


@task.command()
@click.argument("task_id", type=int)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until it ends.")
@click.option("--stdout", "only", flag_value="stdout", help="Only standard output.")
@click.option("--stderr", "only", flag_value="stderr", help="Only standard error.")
@click.option("--attempt", type=click.IntRange(1), help="This attempt (default: the last).")
@click.option("--tail", type=click.IntRange(0), help="Start with the last N chunks only.")
@click.option("--interval", type=click.FloatRange(0.05), default=1.0, show_default=True,
              help="Seconds between polls with --follow.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per chunk (JSON lines).")
@pass_state
def log(
    state: CliState,
    task_id: int,
    follow: bool,
    only: str | None,
    attempt: int | None,
    tail: int | None,
    interval: float,
    as_json: bool,
) -> None:
    """Print the output of a task's last attempt (or of --attempt N).

    The task's standard output goes to standard output, its standard error and the
    agent's own messages to standard error. With --stdout or --stderr only that stream
    is printed, on standard output. With -f, new output is printed as it arrives until
    the attempt ends (a task that has not started yet is waited for).

    Exit codes: 0 (also when the task has not run yet); 3 database unreachable;
    4 unknown task or attempt.
    """
    streams = [only] if only else []
    printed = False
    stdout, stderr = sys.stdout, sys.stderr
    with open_client(state, read_only=True) as client:
        chunks = client.log_chunks(
            task_id, attempt=attempt, streams=streams, tail=tail, follow=follow,
            interval=interval,
        )  # fmt: skip
        for chunk in chunks:
            printed = True
            if as_json:
                stdout.write(json.dumps(jsonable(as_dict(chunk))) + "\n")
            elif chunk.stream == "stdout" or only:
                stdout.write(chunk.text)
            else:
                stderr.write(chunk.text if chunk.stream == "stderr" else f"[scitq] {chunk.text}")
            if follow:
                stdout.flush()
                stderr.flush()
        if not printed and not client.executions(task_id):
            status = client.get(task_id).status
            click.echo(f"task {task_id} has not run ({status}): no output", err=True)


# -- task explain -------------------------------------------------------------------------


@task.command()
@click.argument("task_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def explain(state: CliState, task_id: int, as_json: bool) -> None:
    """Say why a task is not running, or what it is doing.

    Reasons (the `code` in JSON): dependency, backoff, batch_paused, no_worker,
    no_live_worker, workers_busy, runnable, paused, canceled, assigned, running,
    succeeded, failed.

    Exit codes: 0; 3 database unreachable; 4 unknown task.
    """
    with open_client(state, read_only=True) as client:
        found = client.explain(task_id)
    if as_json:
        print_json(as_dict(found))
        return
    click.echo(f"task {task_id} ({found.status}): {found.message}")
    for detail in found.details:
        click.echo(f"  also: {detail}")


# -- actions ------------------------------------------------------------------------------


def _existing(client: Client, task_ids: list[int]) -> dict[int, str]:
    if not task_ids:
        raise InvalidArgument("give at least one task id")
    known = {row["id"]: row["status"] for row in task_statuses(client.connection, task_ids)}
    missing = [str(i) for i in task_ids if i not in known]
    if missing:
        raise NotFound(f"no task {', '.join(missing[:10])}: nothing was done")
    return known


def _report(done: Mapping[int, str], before: Mapping[int, str], verb: str, rule: str) -> None:
    """Print what changed; fail (exit 5) when nothing could be done."""
    skipped = {i: status for i, status in before.items() if i not in done}
    if not done:
        which = ", ".join(f"task {i} ({status})" for i, status in list(skipped.items())[:10])
        raise InvalidTransition(f"nothing {verb}: {which} ({rule})")
    for task_id, status in sorted(done.items()):
        click.echo(f"task {task_id} {verb}: now {status}")
    if skipped:
        click.echo(f"skipped ({rule}): {', '.join(map(str, sorted(skipped)))}", err=True)


def _signaled(before: Mapping[int, str], what: str) -> dict[int, str]:
    """Tasks with a live execution: pause and resume signal their process."""
    return {i: f"{status}, {what}" for i, status in before.items() if status in LIVE}


ids_argument = click.argument("task_ids", nargs=-1, required=True)


@task.command()
@ids_argument
@pass_state
def retry(state: CliState, task_ids: tuple[str, ...]) -> None:
    """Retry failed or canceled tasks (ids: 12 13, 12,13 or 12-20).

    Each gets a fresh retry budget; tasks canceled because of it are restored too.

    Exit codes: 0; 4 unknown task; 5 no task could be retried.
    """
    with open_client(state) as client:
        before = _existing(client, parse_ids(task_ids))
        _report(client.retry(before), before, "retried", "only failed or canceled tasks")


@task.command()
@ids_argument
@click.option("--reason", default="canceled by user", show_default=True, help="Why.")
@pass_state
def cancel(state: CliState, task_ids: tuple[str, ...], reason: str) -> None:
    """Cancel tasks that have not ended; running ones are killed, dependents canceled.

    Exit codes: 0; 4 unknown task; 5 no task could be canceled.
    """
    with open_client(state) as client:
        before = _existing(client, parse_ids(task_ids))
        _report(client.cancel(before, reason), before, TaskStatus.CANCELED, "tasks that have ended")


@task.command()
@ids_argument
@pass_state
def pause(state: CliState, task_ids: tuple[str, ...]) -> None:
    """Hold waiting or pending tasks back; running ones are suspended (SIGSTOP).

    Exit codes: 0; 4 unknown task; 5 no task could be paused.
    """
    with open_client(state) as client:
        before = _existing(client, parse_ids(task_ids))
        done = {r["id"]: r["status"] for r in task_pause(client.connection, before)}
        done.update(_signaled(before, "suspended"))
        _report(done, before, TaskStatus.PAUSED, "only waiting, pending or running tasks")


@task.command()
@ids_argument
@pass_state
def resume(state: CliState, task_ids: tuple[str, ...]) -> None:
    """Release paused tasks; suspended running ones continue (SIGCONT).

    Exit codes: 0; 4 unknown task; 5 no task was paused.
    """
    with open_client(state) as client:
        before = _existing(client, parse_ids(task_ids))
        done = {r["id"]: r["status"] for r in task_resume(client.connection, before)}
        done.update(_signaled(before, "continued"))
        _report(done, before, "resumed", "only paused or running tasks")


@task.command()
@ids_argument
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def delete(state: CliState, task_ids: tuple[str, ...], yes: bool) -> None:
    """Delete tasks with their executions and output (running ones are killed).

    Dependents that have not started are canceled (unless the deleted task had
    succeeded). Asks for confirmation unless --yes.

    Exit codes: 0; 1 not confirmed; 4 unknown task.
    """
    with open_client(state) as client:
        before = _existing(client, parse_ids(task_ids))
        if not yes:
            click.confirm(f"Delete {len(before)} task(s) and their history?", abort=True)
        count = task_delete(client.connection, before)
    click.echo(f"deleted {count} task(s)")
