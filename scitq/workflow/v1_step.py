"""scitq v1's ``Step``: one task of a v1 workflow, with v1's attributes and methods; and
how v1's step arguments (``input``, ``rel_output``, ``required_tasks``...) become native
ones.

A step is declared at once but submitted when the workflow runs, or as soon as
something needs its task (``step.task_id``, ``step.status``...), so declaring thousands
of steps costs no round trip each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from scitq import fetch
from scitq.client import Client
from scitq.compat import split_uris
from scitq.db.task import task_delete
from scitq.errors import InvalidArgument
from scitq.states import OutputStream
from scitq.workflow import native


class Owner(Protocol):
    """What a step needs of its v1 workflow."""

    @property
    def client(self) -> Client: ...

    def submit(self) -> list[native.Step]: ...

    def batch_steps(self, batch: str) -> list[Step]: ...


@dataclass
class BatchPlan:
    """What v1 called a ``Batch``: the recruiting of one batch of a workflow, set by its
    first step."""

    name: str
    shortname: str
    flavor: str | None
    concurrency: int
    provider: str | None
    region: str | None
    tasks_per_worker: int
    maximum_workers: int
    prefetch: int
    extra_workers: int = 0


class Step:
    """A step of a v1 workflow: its task's fields and its batch's, as v1 exposed them.

    Task attributes: ``task_id``, ``name``, ``command``, ``batch`` (the full batch name
    ``<workflow>.<batch>``), ``input``, ``resource`` (v1's space-separated strings),
    ``output``, ``container``, ``container_options``, ``retry``, ``download_timeout``,
    ``run_timeout``, ``use_cache``, ``required_task_ids``, ``status`` (read now).
    Batch attributes: ``flavor``, ``concurrency``, ``provider``, ``region``,
    ``tasks_per_worker``, ``maximum_workers``, ``prefetch``, ``extra_workers``.
    """

    def __init__(
        self, workflow: Owner, native_step: native.Step, plan: BatchPlan, v1_fields: dict[str, Any]
    ) -> None:
        self._workflow = workflow
        self._native = native_step
        self._plan = plan
        self._fields = v1_fields

    # -- task attributes ----------------------------------------------------------------

    @property
    def native(self) -> native.Step:
        """The `scitq.workflow.native.Step` underneath."""
        return self._native

    @property
    def task_id(self) -> int:
        """The task's id (submits the workflow's pending steps first, as v1 had them)."""
        if self._native.task_id is None:
            self._workflow.submit()
        assert self._native.task_id is not None
        return self._native.task_id

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def batch(self) -> str:
        return self._plan.name

    @property
    def command(self) -> str:
        return str(self._native.fields["command"])

    @property
    def output(self) -> str | None:
        return self._native.output

    @property
    def input(self) -> str | None:
        return " ".join(self._native.fields.get("inputs") or ()) or None

    @property
    def resource(self) -> str | None:
        return " ".join(self._native.fields.get("resources") or ()) or None

    @property
    def required_task_ids(self) -> list[int]:
        """The ids of the tasks this one requires (submits first, for them to have ids)."""
        self._workflow.submit()
        return [r if isinstance(r, int) else r.task_id or 0 for r in self._native.requires]

    @property
    def status(self) -> str:
        """The task's status, read now."""
        return self._workflow.client.get(self.task_id).status

    def __getattr__(self, attribute: str) -> Any:
        # v1's other task fields and the batch's, e.g. step.container, step.concurrency
        fields = self.__dict__.get("_fields", {})
        if attribute in fields:
            return fields[attribute]
        plan = self.__dict__.get("_plan")
        if plan is not None and attribute in plan.__dataclass_fields__:
            return getattr(plan, attribute)
        raise AttributeError(f"step {self.__dict__.get('_native')!r} has no {attribute!r}")

    def __repr__(self) -> str:
        return f"<Step {self._native.name!r} of {self._plan.name}>"

    # -- methods ------------------------------------------------------------------------

    def gather(self, attribute: str = "step") -> list[Any]:
        """The steps of this step's batch (``'step'``), their outputs (``'output'``), a
        sub-folder of each output (``'output/sub'``), or outputs with an action
        (``'output|mv:sub'``, ``'output/sub|mv:sub'``), as in v1."""
        steps = self._workflow.batch_steps(self._plan.shortname)
        if attribute == "step":
            return steps
        spec = attribute.lstrip("/")
        if not (spec == "output" or spec.startswith(("output/", "output|"))):
            raise InvalidArgument(
                f"step {self.name!r}: cannot gather {attribute!r}: use 'step', 'output', "
                "'output/<sub-folder>' or 'output|<action>'"
            )
        suffix = spec[len("output") :]
        gathered = []
        for step in steps:
            if step.output is None:
                raise InvalidArgument(f"step {step.name!r} has no output to gather")
            base = step.output
            if suffix.startswith("/") and base.endswith("/"):
                base = base[:-1]
            gathered.append(base + suffix)
        return gathered

    def refresh(self) -> None:
        """v1 re-read the task; attributes here are read when used, so nothing to do."""

    def _log(self, stream: str) -> str | None:
        if not self._workflow.client.executions(self.task_id):
            return None
        return self._workflow.client.log(self.task_id, streams=[stream])

    def get_output(self) -> str | None:
        """The standard output of the task's last attempt, None if it never ran."""
        return self._log(OutputStream.STDOUT)

    def get_error(self) -> str | None:
        """The standard error of the task's last attempt, None if it never ran."""
        return self._log(OutputStream.STDERR)

    def clean(self) -> None:
        """Delete the task (its executions and logs go with it)."""
        task_delete(self._workflow.client.connection, [self.task_id])

    def download(self, destination: str | None = None) -> None:
        """Download this step's output folder into ``destination`` (default: here)."""
        if self.output is None:
            raise InvalidArgument(f"step {self.name!r} has no output to download")
        fetch.get(self.output, (destination or os.getcwd()).rstrip("/") + "/")


class WorkflowException(InvalidArgument):
    """A v1 workflow or step that cannot be built (v1's exception name)."""


class _Unset:
    """A default that tells "not given" from None (v1's ``Unset``)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def given(value: Any, default: Any) -> Any:
    """``value``, or ``default`` when it was not given."""
    return default if value is UNSET else value


def _join(where: str, base: str | None, relative: str, what: str) -> str:
    if base is None:
        raise WorkflowException(f"{where}: cannot use {what} if Workflow.base_storage is unset")
    return fetch.pathjoin(base, relative)


def step_inputs(where: str, base: str | None, given: Any, relative: str | None) -> list[str]:
    """The input URIs of v1's ``input`` (or ``rel_input`` under ``base_storage``)."""
    try:
        inputs = split_uris(given, "input")
    except InvalidArgument as error:
        raise WorkflowException(f"{where}: {error}") from None
    if not inputs and relative:
        inputs = [_join(where, base, relative, "rel_input")]
    return inputs


def step_resources(where: str, given: Any) -> list[str]:
    """The resource URIs of v1's ``resource``."""
    try:
        return split_uris(given, "resource")
    except InvalidArgument as error:
        raise WorkflowException(f"{where}: {error}") from None


def step_output(where: str, base: str | None, given: Any, relative: str | None) -> str | None:
    """v1's ``output`` (or ``rel_output`` under ``base_storage``), ending in ``/``."""
    if isinstance(given, list | tuple):
        raise WorkflowException(f"{where}: output must be a single path, not a list")
    if relative and given:
        raise WorkflowException(f"{where}: cannot specify rel_output and output together")
    output = _join(where, base, relative, "rel_output") if relative else given
    if output is None:
        return None
    output = str(output)
    return output if output.endswith("/") else output + "/"


def requirements(where: str, required: Any) -> list[native.Step | int]:
    """v1's ``required_tasks`` (a step, an id, or a list of them) as native requirements."""
    if required is None:
        return []
    items = [required] if isinstance(required, Step | int) else list(required)
    found: list[native.Step | int] = []
    for item in items:
        if isinstance(item, Step):
            found.append(item.native)
        elif isinstance(item, int) and not isinstance(item, bool):
            found.append(item)
        else:
            raise WorkflowException(f"{where}: required_tasks takes steps or task ids, "
                                    f"not {item!r}")  # fmt: skip
    return found
