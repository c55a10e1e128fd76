"""The native workflow: steps of a pipeline, their dependencies, a live view while they run.

    from scitq import Workflow

    wf = Workflow("rnaseq", retries=2, container="biocontainers/fastp")
    for sample in samples:
        qc = wf.step("qc", f"fastp -i /input/{sample}.fq.gz -o /output/{sample}.fq.gz",
                     name=f"qc-{sample}", inputs=[f"s3://raw/{sample}.fq.gz"],
                     output=f"s3://work/qc/{sample}/")
        wf.step("align", "align.sh", name=f"align-{sample}", required_tasks=qc,
                inputs=qc.gather("output"))
    wf.step("report", "multiqc /input", required_tasks=wf.gather("align"))
    summary = wf.run()   # live progress per step, then a summary table

A step is one task; steps of the same kind share a batch named ``<workflow>.<batch>``.
Tasks are submitted when `Workflow.run` (or `Workflow.submit`) is called, all or none,
in dependency order. Identity is (workflow, batch, task name): running the same script
again reuses the tasks it finds (those that succeeded are not run again, failed or
canceled ones are retried as they were defined) and submits only the new ones. A task
whose dependency fails for good is canceled with it, so a run always ends.

This is ``scitq.Workflow``; ``scitq.workflow.Workflow`` is scitq v1's class, built on
this one (`scitq.workflow.v1`).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scitq.client import TASK_FIELDS, Client
from scitq.db.recruitment import recruiter_set
from scitq.db.rows import BatchProgress
from scitq.errors import InvalidArgument
from scitq.states import TaskStatus
from scitq.workflow.view import Unsuccessful, WorkflowSummary, follow

__all__ = ["Step", "Unsuccessful", "Workflow", "WorkflowSummary"]

#: Task fields a workflow passes down to its steps as defaults.
DEFAULTABLE = ("shell", "container", "container_options", "retries", "retry_delay_seconds",
               "download_timeout_seconds", "run_timeout_seconds", "priority", "env", "tags",
               "resources")  # fmt: skip
#: Task fields a step takes as keywords (``command`` and ``name`` are its arguments).
STEP_FIELDS = TASK_FIELDS - {"command", "name", "depends_on", "depends_on_names"}


@dataclass(eq=False)
class Step:
    """One task of a workflow: what to run, and its task once submitted."""

    workflow: Workflow
    batch: str
    name: str
    fields: dict[str, Any]
    requires: list[Step | int]
    task_id: int | None = None
    reused: bool = False  # found from an earlier run of the script

    @property
    def batch_name(self) -> str:
        """The scitq batch of the step: ``<workflow>.<batch>``."""
        return f"{self.workflow.name}.{self.batch}"

    @property
    def output(self) -> str | None:
        output: str | None = self.fields.get("output")
        return output

    def gather(self, attribute: str | None = None) -> list[Any]:
        """The steps of this step's batch, or one of their attributes (``"output"``)."""
        return self.workflow.gather(self.batch, attribute)

    def status(self) -> str:
        """The task's status now (submits the workflow first if needed)."""
        self.workflow.submit()
        assert self.task_id is not None
        return self.workflow.client.get(self.task_id).status

    def log(self) -> str:
        """The output of the task's last attempt."""
        self.workflow.submit()
        assert self.task_id is not None
        return self.workflow.client.log(self.task_id)


class Workflow:
    """A named set of steps, submitted and followed together.

    Args:
        name: the workflow's name, prefix of its batches (``<name>.<batch>``).
        client: the `Client` to use (default: one from the usual settings).
        max_workers: with ``provider``, the most workers recruited for the whole workflow.
        provider, flavor, region, image: recruiter hints: each batch gets a recruiter
            with these (see ``scitq recruiter``), its share of ``max_workers`` and the
            concurrency of its steps.
        **defaults: task fields every step gets unless it says otherwise (``shell``,
            ``container``, ``retries``, ``run_timeout_seconds``, ``env``...).
    """

    def __init__(
        self,
        name: str,
        *,
        client: Client | None = None,
        max_workers: int | None = None,
        provider: str | None = None,
        flavor: str | None = None,
        region: str | None = None,
        image: str | None = None,
        **defaults: Any,
    ) -> None:
        if not name or any(c.isspace() or c == "." for c in name):
            raise InvalidArgument(f"workflow name {name!r}: use a non-empty word without dots")
        unknown = sorted(set(defaults) - set(DEFAULTABLE))
        if unknown:
            raise InvalidArgument(
                f"unknown workflow default {unknown[0]!r}: use {', '.join(DEFAULTABLE)}"
            )
        if max_workers is not None and max_workers < 1:
            raise InvalidArgument(f"max_workers must be 1 or more, not {max_workers}")
        self.name = name
        self._client = client
        self.max_workers = max_workers
        self.recruiting = {"provider": provider, "flavor": flavor, "region": region,
                           "image": image}  # fmt: skip
        self.defaults = defaults
        self.steps: list[Step] = []
        self._names: dict[tuple[str, str], Step] = {}
        self._concurrency: dict[str, tuple[int, int, int | None]] = {}

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client()
        return self._client

    # -- declaring ----------------------------------------------------------------------

    def step(
        self,
        batch: str,
        command: str | Sequence[str],
        *,
        name: str | None = None,
        required_tasks: Step | int | Iterable[Step | int] | None = None,
        concurrency: int | None = None,
        prefetch: int | None = None,
        max_workers: int | None = None,
        **fields: Any,
    ) -> Step:
        """Add a step (one task) to ``batch``; returns it for later steps to depend on.

        Args:
            batch: the kind of step; its tasks go to the batch ``<workflow>.<batch>``.
            command: a command line, or its words.
            name: unique in the batch (default ``"<batch> #<n>"``): the task's identity
                when the script runs again.
            required_tasks: steps (or task ids) that must succeed first; `gather` gives
                all the steps of a batch.
            concurrency, prefetch, max_workers: for the batch's recruiter (first step
                of a batch that gives them wins).
            **fields: task fields (``inputs``, ``resources``, ``output``, ``container``,
                ``retries``, ``env``...), over the workflow's defaults.
        """
        if not batch or "." in batch or any(c.isspace() for c in batch):
            raise InvalidArgument(f"step batch {batch!r}: use a non-empty word without dots")
        count = sum(1 for s in self.steps if s.batch == batch)
        name = name or f"{batch} #{count + 1}"
        if (batch, name) in self._names:
            raise InvalidArgument(
                f"step {name!r} is already in batch {batch!r}: names identify tasks"
            )
        if "depends_on" in fields or "depends_on_names" in fields:
            raise InvalidArgument(f"step {name!r}: give dependencies as required_tasks=")
        unknown = sorted(set(fields) - STEP_FIELDS)
        if unknown:
            raise InvalidArgument(
                f"step {name!r} of batch {batch!r}: unknown argument {unknown[0]!r} "
                f"(use {', '.join(sorted(STEP_FIELDS))})"
            )
        merged = {**self.defaults, **fields}
        merged["command"] = command if isinstance(command, str) else shlex.join(command)
        merged["name"] = name
        requires = _requirements(required_tasks)
        for required in requires:
            if isinstance(required, Step) and required.workflow is not self:
                raise InvalidArgument(f"step {required.name!r} belongs to another workflow")
        step = Step(self, batch, name, merged, requires)
        if concurrency is not None or batch not in self._concurrency:
            self._concurrency[batch] = (concurrency or 1, prefetch or 0, max_workers)
        self.steps.append(step)
        self._names[(batch, name)] = step
        return step

    def gather(self, batch: str, attribute: str | None = None) -> list[Any]:
        """The steps of ``batch`` so far, or one attribute of each (e.g. ``"output"``)."""
        steps = [step for step in self.steps if step.batch == batch]
        if not steps:
            raise InvalidArgument(f"workflow {self.name!r} has no step in batch {batch!r}")
        if attribute is None:
            return steps
        if attribute not in ("output", "name", "task_id"):
            raise InvalidArgument(f"cannot gather {attribute!r}: use output, name or task_id")
        return [getattr(step, attribute) for step in steps if getattr(step, attribute)]

    @property
    def batches(self) -> list[str]:
        """The scitq batches of the workflow, in the order their first step came."""
        return list(dict.fromkeys(step.batch_name for step in self.steps))

    # -- submitting ---------------------------------------------------------------------

    def submit(self) -> list[Step]:
        """Submit the steps not submitted yet (all or none); returns those now queued.

        Tasks found from an earlier run (same batch and name) are reused: succeeded
        ones stay, failed or canceled ones are retried.
        """
        todo = [step for step in self.steps if step.task_id is None]
        if not todo:
            return []
        client = self.client
        try:
            with client.connection.transaction():
                self._reuse_existing(todo)
                fresh = [step for step in todo if step.task_id is None]
                for batch, level_steps in _by_level(fresh):
                    tasks = [self._task(step) for step in level_steps]
                    rows = client.submit_many(batch, tasks)
                    for step, row in zip(level_steps, rows, strict=True):
                        step.task_id = row.id
                self._recruit()
        except BaseException:
            for step in todo:  # rolled back: nothing of this call exists
                step.task_id, step.reused = None, False
            raise
        return fresh

    def _task(self, step: Step) -> dict[str, Any]:
        ids = []
        for required in step.requires:
            if isinstance(required, Step):
                assert required.task_id is not None  # earlier levels are submitted first
                ids.append(required.task_id)
            else:
                ids.append(required)
        return {**step.fields, "depends_on": ids} if ids else dict(step.fields)

    def _reuse_existing(self, steps: list[Step]) -> None:
        client = self.client
        wanted = {(s.batch_name, s.name): s for s in steps}
        retry = []
        for batch in dict.fromkeys(s.batch_name for s in steps):
            if not client.batch_exists(batch):
                continue
            for task in client.tasks(batch=batch):
                step = wanted.get((batch, task.name or ""))
                if step is None:
                    continue
                step.task_id, step.reused = task.id, True
                if task.status in (TaskStatus.FAILED, TaskStatus.CANCELED):
                    retry.append(task.id)
        if retry:
            client.retry(retry)

    def _recruit(self) -> None:
        if not self.recruiting["provider"]:
            return
        shares = _shares(self.max_workers, {b: c[2] for b, c in self._concurrency.items()})
        for batch, (concurrency, prefetch, _wanted) in self._concurrency.items():
            recruiter_set(
                self.client.connection, f"{self.name}.{batch}", str(self.recruiting["provider"]),
                shares[batch], flavor=self.recruiting["flavor"], image=self.recruiting["image"],
                region=self.recruiting["region"], concurrency=concurrency, prefetch=prefetch,
                tasks_per_worker=concurrency,
            )  # fmt: skip

    # -- running ------------------------------------------------------------------------

    def progress(self) -> dict[str, BatchProgress]:
        """Task counts of each batch of the workflow."""
        return {batch: self.client.progress(batch) for batch in self.batches}

    def unsuccessful(self) -> list[Unsuccessful]:
        """The tasks of the workflow that failed or were canceled for good."""
        ids = {step.task_id for step in self.steps if step.task_id is not None}
        return [
            Unsuccessful(
                batch, task.name, task.id, task.status, task.failure_reason or task.cancel_reason
            )
            for batch in self.batches
            for status in (TaskStatus.FAILED, TaskStatus.CANCELED)
            for task in self.client.tasks(batch=batch, status=status)
            if task.id in ids
        ]

    def run(
        self, *, refresh: float = 2.0, timeout: float | None = None, live: bool | None = None
    ) -> WorkflowSummary:
        """Submit what is new, follow every batch until no task is left to run.

        Args:
            refresh: seconds between two looks at the database.
            timeout: give up waiting (`scitq.errors.WaitTimeout`) after this many seconds.
            live: draw progress bars (default: when standard error is a terminal).

        Returns:
            The final counts per batch and the tasks that did not succeed; print it for
            a table. ``summary.ok`` is True when every task succeeded.
        """
        self.submit()
        live = sys.stderr.isatty() if live is None else live
        return follow(
            self.name, self.progress, self.unsuccessful, refresh=refresh, timeout=timeout, live=live
        )


def _requirements(required: Step | int | Iterable[Step | int] | None) -> list[Step | int]:
    if required is None:
        return []
    if isinstance(required, (Step, int)):
        return [required]
    found = list(required)
    for item in found:
        if not isinstance(item, (Step, int)) or isinstance(item, bool):
            raise InvalidArgument(f"required_tasks takes steps or task ids, not {item!r}")
    return found


def _by_level(steps: list[Step]) -> list[tuple[str, list[Step]]]:
    """Steps grouped by batch within dependency levels: each group submitted in one call."""
    level: dict[int, int] = {}
    for step in steps:  # a step can only require steps declared before it
        deps = [r for r in step.requires if isinstance(r, Step) and r.task_id is None]
        level[id(step)] = 1 + max((level[id(d)] for d in deps), default=-1)
    groups: dict[tuple[int, str], list[Step]] = {}
    for step in steps:
        groups.setdefault((level[id(step)], step.batch_name), []).append(step)
    return [(batch, group) for (_, batch), group in sorted(groups.items(), key=lambda g: g[0][0])]


def _shares(total: int | None, wanted: Mapping[str, int | None]) -> dict[str, int]:
    """Each batch's most workers: what it asks (else the workflow's), within the total."""
    shares: dict[str, int] = {}
    left = total
    for batch, asked in wanted.items():
        share = asked or total or 1
        if left is not None:
            share = max(1, min(share, left))
            left = max(1, left - share)
        shares[batch] = share
    return shares
