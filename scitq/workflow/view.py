"""Following a running workflow: live progress bars per batch, and the final summary.

The view knows no `scitq.workflow.Workflow`: it is given the workflow's name and two
readers, one of the counts per batch, one of the tasks that did not succeed.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console, ConsoleOptions, RenderResult
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from scitq.db.rows import BatchProgress
from scitq.errors import WaitTimeout
from scitq.states import TaskStatus


@dataclass(frozen=True, slots=True)
class Unsuccessful:
    """A task of the workflow that did not succeed."""

    batch: str
    name: str | None
    task_id: int
    status: str
    reason: str | None


@dataclass(frozen=True)
class WorkflowSummary:
    """How a workflow ended: counts per batch, and what did not succeed."""

    workflow: str
    batches: dict[str, BatchProgress]
    unsuccessful: list[Unsuccessful] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every task of the workflow succeeded."""
        return all(p.succeeded == p.total for p in self.batches.values())

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = Table(title=f"workflow {self.workflow} ({self.seconds:.0f} s)")
        columns = ("batch", "total", TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED)
        for column in columns:
            table.add_column(column, justify="left" if column == "batch" else "right")
        for batch, p in self.batches.items():
            table.add_row(batch, str(p.total), str(p.succeeded), str(p.failed), str(p.canceled))
        yield table
        for task in self.unsuccessful[:20]:
            yield f"  {task.status} {task.batch} {task.name or ''} (task {task.task_id}): " + (
                task.reason or ""
            )
        if len(self.unsuccessful) > 20:
            yield f"  ... and {len(self.unsuccessful) - 20} more"

    def __str__(self) -> str:
        console = Console(width=100, record=True, file=io.StringIO(), color_system=None)
        console.print(self)
        return console.export_text()


#: Reads the task counts of each batch of a workflow.
ProgressReader = Callable[[], dict[str, BatchProgress]]
#: Reads the tasks of a workflow that did not succeed.
UnsuccessfulReader = Callable[[], list[Unsuccessful]]


def follow(
    workflow: str,
    progress: ProgressReader,
    unsuccessful: UnsuccessfulReader,
    *,
    refresh: float,
    timeout: float | None,
    live: bool,
) -> WorkflowSummary:
    """Poll the workflow's batches until nothing is left to run; the summary.

    Args:
        workflow: the workflow's name (for the summary and messages).
        progress: reads the counts per batch, once per ``refresh`` seconds.
        unsuccessful: reads, once at the end, the tasks that did not succeed.
        refresh: seconds between two reads.
        timeout: raise `scitq.errors.WaitTimeout` after this many seconds.
        live: draw progress bars on standard error.
    """
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    with _Bars(live) as update:
        while True:
            counts = progress()
            update(counts)
            if all(p.remaining == 0 for p in counts.values()):
                break
            if deadline is not None and time.monotonic() >= deadline:
                left = sum(p.remaining for p in counts.values())
                raise WaitTimeout(
                    f"workflow {workflow!r} still has {left} tasks to run after {timeout:g} s"
                )
            time.sleep(refresh)
    return WorkflowSummary(workflow, counts, unsuccessful(), time.monotonic() - started)


class _Bars:
    """Progress bars, one per batch, or nothing when not live."""

    def __init__(self, live: bool) -> None:
        self._live = live
        self._progress: Progress | None = None
        self._ids: dict[str, TaskID] = {}

    def __enter__(self) -> _Bars:
        if self._live:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                console=Console(stderr=True),
            )  # fmt: skip
            self._progress.start()
        return self

    def __call__(self, counts: dict[str, BatchProgress]) -> None:
        if self._progress is None:
            return
        for batch, p in counts.items():
            detail = f"{p.running} running, {p.failed} failed, {p.canceled} canceled"
            if batch not in self._ids:
                self._ids[batch] = self._progress.add_task(batch, total=p.total, detail=detail)
            self._progress.update(self._ids[batch], completed=p.done, total=p.total,
                                  detail=detail)  # fmt: skip

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
