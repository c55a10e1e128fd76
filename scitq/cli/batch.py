"""``scitq batch``: list, show, pause, resume, retry, cancel, delete and wait for batches."""

from __future__ import annotations

import copy
import time
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from scitq.cli import CliState, console, pass_state
from scitq.cli.options import output_options
from scitq.cli.output import (
    Column,
    cell,
    format_seconds,
    open_client,
    print_json,
    print_rows,
)
from scitq.client import BatchProgress, as_dict
from scitq.db.batch import (
    batch_cancel,
    batch_delete,
    batch_execution_stats,
    batch_pause,
    batch_resume,
    batch_retry,
    batch_signal,
    batch_workers,
)
from scitq.states import ExecutionStatus, SignalKind, TaskStatus

#: `scitq batch wait`: the batch ended with failed or canceled tasks.
EXIT_TASKS_FAILED = 8
#: `scitq batch wait`: --timeout passed first (the code of scitq.errors.WaitTimeout).
EXIT_TIMEOUT = 9

BATCH_COLUMNS: list[Column] = [
    ("BATCH", lambda b: b.batch), ("PAUSED", lambda b: "paused" if b.is_paused else ""),
    ("TOTAL", lambda b: b.total), ("WAITING", lambda b: b.waiting),
    ("PENDING", lambda b: b.pending), ("RUNNING", lambda b: b.assigned + b.running),
    ("SUCCEEDED", lambda b: b.succeeded), ("FAILED", lambda b: b.failed),
    ("CANCELED", lambda b: b.canceled), ("HELD", lambda b: b.paused),
    ("MEAN", lambda b: format_seconds(b.mean_seconds)),
]  # fmt: skip
BATCH_FIELDS = list(BatchProgress.__dataclass_fields__)

batch_argument = click.argument("name", metavar="BATCH")


@click.group()
def batch() -> None:
    """Follow and act on batches: list, show, pause, resume, retry-failed, delete, wait."""


@batch.command("list")
@output_options
@pass_state
def list_batches(state: CliState, as_json: bool, as_csv: bool) -> None:
    """List batches with their task counts.

    RUNNING counts assigned and running tasks; HELD counts paused tasks.

    Exit codes: 0; 3 database unreachable.
    """
    with open_client(state, read_only=True) as client:
        found = client.batches()
    rows = found if not (as_json or as_csv) else [as_dict(b) for b in found]
    print_rows(rows, BATCH_COLUMNS, as_json=as_json, as_csv=as_csv, fields=BATCH_FIELDS)


@batch.command()
@batch_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def show(state: CliState, name: str, as_json: bool) -> None:
    """Show a batch: task counts, resources used, and the workers serving it.

    Exit codes: 0; 3 database unreachable; 4 unknown batch.
    """
    with open_client(state, read_only=True) as client:
        progress = client.progress(name)
        stats = batch_execution_stats(client.connection, name)
        workers = batch_workers(client.connection, name)
    if as_json:
        print_json({**as_dict(progress), "executions": stats, "workers": workers})
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("batch", cell(name + (" (paused)" if progress.is_paused else "")))
    counts = ", ".join(f"{value} {key}" for key in TaskStatus if (value := getattr(progress, key)))
    grid.add_row("tasks", cell(counts or "none"))
    mean, longest = format_seconds(progress.mean_seconds), format_seconds(progress.max_seconds)
    grid.add_row("duration", cell(f"mean {mean or '-'}, max {longest or '-'}"))
    if stats is not None:
        cpu = (stats["cpu_user_seconds"] or 0) + (stats["cpu_system_seconds"] or 0)
        failed = stats[ExecutionStatus.FAILED]
        attempts = f"{stats['executions']} ({failed} failed), CPU {cpu / 3600:.2f} h"
        grid.add_row("attempts", cell(attempts))
    names = [
        f"{w['name']} ({w['liveness']}{', paused' if w['is_paused'] else ''})" for w in workers
    ]
    grid.add_row("workers", cell(", ".join(names) or "none serves it"))
    console().print(grid)


@batch.command()
@batch_argument
@click.option("--running", is_flag=True, help="Also suspend its running tasks (SIGSTOP).")
@pass_state
def pause(state: CliState, name: str, running: bool) -> None:
    """Stop claims from a batch; running tasks go on unless --running.

    Exit codes: 0; 4 unknown batch.
    """
    with open_client(state) as client:
        batch_pause(client.connection, name)
        signaled = batch_signal(client.connection, name, SignalKind.PAUSE) if running else 0
    click.echo(f"batch {name} paused" + (f"; {signaled} running task(s) suspended" * running))


@batch.command()
@batch_argument
@click.option("--running", is_flag=True, help="Also continue suspended tasks (SIGCONT).")
@pass_state
def resume(state: CliState, name: str, running: bool) -> None:
    """Allow claims from a batch again.

    Exit codes: 0; 4 unknown batch.
    """
    with open_client(state) as client:
        batch_resume(client.connection, name)
        signaled = batch_signal(client.connection, name, SignalKind.RESUME) if running else 0
    click.echo(f"batch {name} resumed" + (f"; {signaled} task(s) continued" * running))


@batch.command("retry-failed")
@batch_argument
@pass_state
def retry_failed(state: CliState, name: str) -> None:
    """Retry every failed or canceled task of a batch (with a fresh retry budget).

    Tasks of other batches canceled because of them are restored too.

    Exit codes: 0 (also when there was nothing to retry); 4 unknown batch.
    """
    with open_client(state) as client:
        count = batch_retry(client.connection, name)
    click.echo(f"batch {name}: {count} task(s) retried")


# `retry`, the name of DESIGN.md §8, as a hidden alias
batch.add_command(copy.copy(retry_failed), "retry")
batch.commands["retry"].hidden = True


@batch.command()
@batch_argument
@click.option("--reason", default="batch canceled by user", show_default=True, help="Why.")
@pass_state
def cancel(state: CliState, name: str, reason: str) -> None:
    """Cancel every task of a batch that has not ended (running ones are killed).

    Exit codes: 0; 4 unknown batch.
    """
    with open_client(state) as client:
        count = batch_cancel(client.connection, name, reason)
    click.echo(f"batch {name}: {count} task(s) canceled")


@batch.command()
@batch_argument
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def delete(state: CliState, name: str, yes: bool) -> None:
    """Delete a batch with all its tasks, executions and output.

    Running tasks are killed; dependents in other batches are canceled. Asks for
    confirmation unless --yes.

    Exit codes: 0; 1 not confirmed; 4 unknown batch.
    """
    with open_client(state) as client:
        total = client.progress(name).total
        if not yes:
            click.confirm(f"Delete batch {name} and its {total} task(s)?", abort=True)
        count = batch_delete(client.connection, name)
    click.echo(f"batch {name} deleted with {count} task(s)")


# -- wait ---------------------------------------------------------------------------------


def _counts(progress: BatchProgress) -> str:
    return (
        f"[cyan]{progress.assigned + progress.running} running[/] "
        f"[yellow]{progress.pending + progress.waiting} queued[/] "
        f"[green]{progress.succeeded} ok[/] [red]{progress.failed} failed[/]"
        + (f" [magenta]{progress.canceled} canceled[/]" if progress.canceled else "")
        + (f" {progress.paused} paused" if progress.paused else "")
        + (" [bold](batch paused)[/]" if progress.is_paused else "")
    )


@batch.command()
@batch_argument
@click.option("--timeout", type=click.FloatRange(0), help="Give up after this many seconds.")
@click.option("--interval", type=click.FloatRange(0.05), default=1.0, show_default=True,
              help="Seconds between reads of the counts (the end is heard at once).")  # fmt: skip
@click.option("--explain-after", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Say why after this many seconds without progress.")  # fmt: skip
@click.option("--give-up-after", type=click.FloatRange(0), default=600.0, show_default=True,
              help="Exit 9 once no worker could serve the batch for this many seconds "
              "(0: never).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the final counts as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@pass_state
def wait(
    state: CliState,
    name: str,
    timeout: float | None,
    interval: float,
    explain_after: float,
    give_up_after: float,
    as_json: bool,
    quiet: bool,
) -> None:
    """Wait until no task of a batch is left to run, with a progress bar.

    The bar (on standard error) shows tasks ended, the counts per state and an
    estimate of the time left. Paused tasks count as left to run. When nothing has
    run or changed for --explain-after seconds, a line on standard error says why
    (as `scitq task explain` would: no worker serves the batch, all are busy...).

    Exit codes: 0 every task succeeded; 8 some tasks failed or were canceled;
    9 --timeout passed first, or no worker served the batch for --give-up-after
    seconds; 3 database unreachable; 4 unknown batch.
    """
    started = time.monotonic()
    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=Console(stderr=True), disable=quiet,
    )  # fmt: skip
    bar_task: TaskID | None = None

    def show_progress(progress: BatchProgress) -> None:
        nonlocal bar_task
        fields: dict[str, Any] = {"counts": _counts(progress)}
        if bar_task is None:  # started at the first counts: no empty bar for an unknown batch
            bar.start()
            bar_task = bar.add_task(name, total=progress.total, completed=progress.done, **fields)
        else:
            bar.update(bar_task, total=progress.total, completed=progress.done, **fields)

    try:
        with open_client(state, read_only=True) as client:
            final = client.wait(
                name, timeout=timeout, interval=interval, progress=show_progress,
                explain_after=explain_after, unserved_timeout=give_up_after or None,
                on_stall=lambda said: bar.console.print(said, markup=False, soft_wrap=True),
            )  # fmt: skip
    finally:
        if bar_task is not None:
            bar.stop()
    elapsed = format_seconds(time.monotonic() - started)
    if as_json:
        print_json(as_dict(final))
    else:
        click.echo(
            f"batch {name}: {final.succeeded} succeeded, {final.failed} failed, "
            f"{final.canceled} canceled ({elapsed})"
        )
    if final.failed or final.canceled:
        click.get_current_context().exit(EXIT_TASKS_FAILED)
