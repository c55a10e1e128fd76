"""Following a running workflow: live progress bars per batch, and the final summary."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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

from scitq.db.listing import BatchProgress
from scitq.errors import WaitTimeout

if TYPE_CHECKING:
    from scitq.workflow import Workflow


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
        for column in ("batch", "total", "succeeded", "failed", "canceled"):
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


def follow(
    workflow: Workflow, *, refresh: float, timeout: float | None, live: bool
) -> WorkflowSummary:
    """Poll the workflow's batches until nothing is left to run; the summary."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    with _Bars(workflow, live) as update:
        while True:
            counts = workflow.progress()
            update(counts)
            if all(p.remaining == 0 for p in counts.values()):
                break
            if deadline is not None and time.monotonic() >= deadline:
                left = sum(p.remaining for p in counts.values())
                raise WaitTimeout(
                    f"workflow {workflow.name!r} still has {left} tasks to run after {timeout:g} s"
                )
            time.sleep(refresh)
    return WorkflowSummary(workflow.name, counts, _unsuccessful(workflow),
                           time.monotonic() - started)  # fmt: skip


class _Bars:
    """Progress bars, one per batch, or nothing when not live."""

    def __init__(self, workflow: Workflow, live: bool) -> None:
        self._live = live
        self._workflow = workflow
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


def _unsuccessful(workflow: Workflow) -> list[Unsuccessful]:
    ids = [step.task_id for step in workflow.steps if step.task_id is not None]
    return list(_not_succeeded(workflow, ids))


def _not_succeeded(workflow: Workflow, ids: list[int]) -> Iterator[Unsuccessful]:
    client = workflow.client
    for batch in workflow.batches:
        for status in ("failed", "canceled"):
            for task in client.tasks(batch=batch, status=status):
                if task.id in ids:
                    reason = task.failure_reason or task.cancel_reason
                    yield Unsuccessful(batch, task.name, task.id, task.status, reason)
