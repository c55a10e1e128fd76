"""scitq v1's ``Workflow``, with v1's constructor and ``step()`` arguments, on the native one.

    from scitq.workflow import Workflow

    wf = Workflow("demo", max_step_workers=2, flavor="local", retry=1,
                  container="biocontainers/fastp", base_storage="s3://bucket/demo")
    for sample, fastqs in samples.items():
        qc = wf.step(batch="qc", name=f"qc-{sample}", concurrency=4, rounds=2,
                     command="fastp -i /input/r1.fq.gz -o /output/r1.fq.gz",
                     input=" ".join(fastqs), rel_output=f"qc/{sample}")
    wf.step(batch="report", name="report", concurrency=1, required_tasks=qc.gather(),
            command="multiqc /input", input=qc.gather("output"), rel_output="report")
    wf.run()
    wf.clean()

What v1 did, and what this does:

* ``step()`` takes v1's arguments; unknown ones are refused with the step named. The
  first step of a batch defines its recruiting (``concurrency``, ``flavor``, ``provider``,
  ``region``, ``maximum_workers`` (or ``max_step_workers``), ``tasks_per_worker`` (or
  ``concurrency`` x ``rounds``), shared within ``max_workflow_workers``), as in v1.
* ``input``/``resource`` take v1's forms (space-separated strings, lists); ``output``
  gets its trailing ``/``; ``rel_input``/``rel_output`` are relative to ``base_storage``.
* Tasks are submitted when the workflow runs (or when a step's ``task_id`` is read);
  re-running a script makes new tasks, unless ``use_cache`` finds a succeeded task of
  the same batch, name and command (v1's cache); a new task gets ``use_cache`` too (the
  task cache: an earlier success of the same work, still in place, is reused).
* ``run()`` shows live progress bars (not v1's urwid screen) and returns the summary;
  ``debug=True`` (v1's interactive debugger) is refused.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from scitq import fetch
from scitq.client import Client
from scitq.db.batch import batch_delete, batch_pause, batch_resume, batch_signal
from scitq.db.recruitment import recruiter_delete, recruiter_list, recruiter_set
from scitq.db.task import task_delete
from scitq.errors import InvalidArgument
from scitq.states import SignalKind, TaskStatus
from scitq.workflow import native
from scitq.workflow.v1_step import (
    UNSET,
    BatchPlan,
    Step,
    WorkflowException,
    given,
    requirements,
    step_inputs,
    step_output,
    step_resources,
)
from scitq.workflow.view import WorkflowSummary, follow

log = logging.getLogger(__name__)

__all__ = ["Step", "Workflow", "WorkflowException"]

#: run() looks at the database at least this often (v1's ``refresh`` is an upper bound).
POLL_SECONDS = 2.0


def _database_url(server: str | None) -> str | None:
    """The database a v1 ``server=`` names: a PostgreSQL URI or conninfo, else None."""
    if server is None or server.startswith(("postgresql://", "postgres://")) or "=" in server:
        return server
    log.warning(
        "server=%r is a scitq v1 server: scitq v2 has none, the configured database is used "
        "(give a postgresql:// URL to choose another)",
        server,
    )
    return None


class _Native(native.Workflow):
    """The native workflow under a v1 one: v1's reuse rule and v1's recruiters."""

    def __init__(self, name: str, client: Client, owner: Workflow) -> None:
        super().__init__(name, client=client)
        self.owner = owner

    def _reuse_existing(self, steps: list[native.Step]) -> None:
        cached = {(s.batch_name, s.name): s for s in steps if s in self.owner.cached_steps}
        for batch in dict.fromkeys(batch for batch, _name in cached):
            if not self.client.batch_exists(batch):
                continue
            for task in self.client.tasks(batch=batch, status=TaskStatus.SUCCEEDED):
                step = cached.get((batch, task.name or ""))
                if step is not None and step.task_id is None and _same_task(step, task):
                    step.task_id, step.reused = task.id, True

    def _recruit(self) -> None:
        self.owner.recruit()


def _same_task(step: native.Step, task: Any) -> bool:
    fields = step.fields
    return bool(
        task.command == fields["command"]
        and list(task.inputs or []) == list(fields.get("inputs") or [])
        and list(task.resources or []) == list(fields.get("resources") or [])
        and (task.container or None) == (fields.get("container") or None)
        and (task.output or None) == (fields.get("output") or None)
    )


class Workflow:
    """A v1 workflow: ``Workflow(name, max_step_workers, server, provider, region, flavor,
    shell, max_workflow_workers, retry, rounds, prefetch, container, container_options,
    download_timeout, run_timeout, use_cache, base_storage, debug)``; most are defaults of
    the steps. ``client`` (not v1's) gives the `scitq.Client` to use.

    Raises:
        WorkflowException: ``debug=True``, or a provider and region without
            ``max_workflow_workers`` (v1's rule).
    """

    def __init__(
        self,
        name: str,
        max_step_workers: int | None = None,
        server: str | None = None,
        provider: str | None = None,
        region: str | None = "auto",
        flavor: str | None = None,
        shell: bool | str = False,
        max_workflow_workers: int | None = None,
        retry: int | None = None,
        rounds: int | None = None,
        prefetch: int | None = None,
        container: str | None = None,
        container_options: str = "",
        download_timeout: int | None = None,
        run_timeout: int | None = None,
        use_cache: bool = False,
        base_storage: str | None = None,
        debug: bool = False,
        *,
        client: Client | None = None,
    ) -> None:
        if debug:
            raise WorkflowException(
                f"workflow {name!r}: debug=True (v1's step-by-step debugger) is not available; "
                "run it, then read `scitq task log` and use `scitq task retry` "
                "(docs/v1-migration.md)"
            )
        if region and provider and not max_workflow_workers:
            raise WorkflowException(
                f'workflow {name!r}: for security, set "max_workflow_workers" when provider '
                "and region are set"
            )
        if max_step_workers and max_workflow_workers and max_step_workers > max_workflow_workers:
            log.warning("max_step_workers %s is above max_workflow_workers %s",
                        max_step_workers, max_workflow_workers)  # fmt: skip
        self.name = name
        self._client = client or Client(_database_url(server))
        self._native = _Native(name, self._client, self)
        self.max_step_workers, self.max_workflow_workers = max_step_workers, max_workflow_workers
        self.provider, self.region, self.flavor = provider, region, flavor
        self.shell, self.retry, self.rounds, self.prefetch = shell, retry, rounds, prefetch
        self.container, self.container_options = container, container_options
        self.download_timeout, self.run_timeout = download_timeout, run_timeout
        self.use_cache = use_cache
        self.base_storage = None if base_storage is None else str(base_storage)
        self.debug = False
        self._steps: list[Step] = []
        self._plans: dict[str, BatchPlan] = {}
        self._current_workers = 0
        self._suspended = False
        self._cleaned = False
        self.cached_steps: set[native.Step] = set()

    @property
    def client(self) -> Client:
        return self._client

    @property
    def steps(self) -> list[Step]:
        """The steps declared so far, in order."""
        return list(self._steps)

    @property
    def previous_step(self) -> Step | None:
        """The last step declared (v1's shortcut)."""
        return self._steps[-1] if self._steps else None

    def batch_steps(self, batch: str) -> list[Step]:
        """The steps of the batch ``batch`` (its short name), in order."""
        return [s for s in self._steps if s.native.batch == batch]

    # -- declaring ----------------------------------------------------------------------

    def step(
        self,
        batch: str,
        command: str,
        concurrency: int | None = None,
        prefetch: int | None = UNSET,
        provider: str | None = UNSET,
        region: str | None = UNSET,
        flavor: str | None = UNSET,
        name: str | None = None,
        tasks_per_worker: int | None = None,
        rounds: int | None = None,
        shell: bool | str | None = UNSET,
        maximum_workers: int | None = UNSET,
        input: str | Sequence[str] | None = None,
        output: str | None = None,
        resource: str | Sequence[str] | None = None,
        rel_output: str | None = None,
        rel_input: str | None = None,
        required_tasks: Step | int | Iterable[Step | int] | None = None,
        container: str | None = UNSET,
        container_options: str | None = UNSET,
        retry: int | None = UNSET,
        download_timeout: int | None = UNSET,
        run_timeout: int | None = UNSET,
        use_cache: bool | None = UNSET,
        args: dict[str, Any] | None = None,
        **unknown: Any,
    ) -> Step:
        """Add a step (one task) to the batch ``<workflow>.<batch>``; v1's arguments.

        Raises:
            WorkflowException: naming the step and what is wrong (an unknown argument,
                a first step of a batch without concurrency, flavor or maximum_workers...).
        """
        label = name or f"{batch} #{len(self.batch_steps(batch)) + 1}"
        where = f"step {label!r}"
        if unknown:
            raise WorkflowException(
                f"{where}: unknown argument {sorted(unknown)[0]!r} (scitq v1's step() takes "
                "batch, command, concurrency, prefetch, provider, region, flavor, name, "
                "tasks_per_worker, rounds, shell, maximum_workers, input, output, resource, "
                "rel_output, rel_input, required_tasks, container, container_options, "
                "retry, download_timeout, run_timeout, use_cache)"
            )
        if not isinstance(command, str) or args is not None:
            raise WorkflowException(
                f"{where}: the command must be a string (v1's shell_code and @remote "
                "functions with args= are not supported)"
            )
        plan = self._plans.get(batch) or self._plan(
            batch, where, concurrency, prefetch, provider, region, flavor, tasks_per_worker,
            rounds, maximum_workers,
        )  # fmt: skip
        v1_shell = given(shell, self.shell)
        fields: dict[str, Any] = {
            "inputs": step_inputs(where, self.base_storage, input, rel_input),
            "resources": step_resources(where, resource),
            "output": step_output(where, self.base_storage, output, rel_output),
            "container": given(container, self.container),
            "container_options": given(container_options, self.container_options) or None,
            "retries": given(retry, self.retry),
            "download_timeout_seconds": given(download_timeout, self.download_timeout),
            "run_timeout_seconds": given(run_timeout, self.run_timeout),
            # the task cache too: a new task of the same work finds an earlier success
            "use_cache": True if given(use_cache, self.use_cache) else None,
        }
        if isinstance(v1_shell, str) and v1_shell:  # shell="bash": v1 ran `bash -c command`
            command, fields["shell"] = shlex.join([v1_shell, "-c", command]), False
        else:
            fields["shell"] = bool(v1_shell)
        fields = {key: value for key, value in fields.items() if value not in (None, [])}
        try:
            required = requirements(where, required_tasks)
            native_step = self._native.step(
                batch, command, name=label, required_tasks=required, **fields
            )
        except WorkflowException:
            raise
        except InvalidArgument as error:
            raise WorkflowException(f"{where}: {error}") from None
        if given(use_cache, self.use_cache):
            self.cached_steps.add(native_step)
        v1_fields = {"container": fields.get("container"), "retry": fields.get("retries"),
                     "container_options": fields.get("container_options"),
                     "download_timeout": fields.get("download_timeout_seconds"),
                     "run_timeout": fields.get("run_timeout_seconds"), "shell": v1_shell,
                     "use_cache": native_step in self.cached_steps}  # fmt: skip
        step = Step(self, native_step, plan, v1_fields)
        self._steps.append(step)
        return step

    def _plan(
        self, batch: str, where: str, concurrency: int | None, prefetch: Any, provider: Any,
        region: Any, flavor: Any, tasks_per_worker: int | None, rounds: int | None,
        maximum_workers: Any,
    ) -> BatchPlan:  # fmt: skip
        """The recruiting of a new batch, by v1's rules."""
        provider, region = given(provider, self.provider), given(region, self.region)
        flavor, rounds = given(flavor, self.flavor), rounds or self.rounds
        maximum = given(maximum_workers, self.max_step_workers)
        if maximum is None:
            raise WorkflowException(f"{where}: maximum_workers is mandatory if "
                                    f"Workflow.max_step_workers is unset and batch {batch} "
                                    "is not already defined")  # fmt: skip
        if flavor is None:
            raise WorkflowException(f"{where}: a flavor is mandatory as batch {batch} is not "
                                    "already defined")  # fmt: skip
        if concurrency is None:
            raise WorkflowException(f"{where}: a concurrency is mandatory as batch {batch} is "
                                    "not already defined")  # fmt: skip
        region = None if region == "auto" else region
        if provider:
            try:
                self._client.settings.scheduler.providers.check_deploy(provider, flavor, region)
            except InvalidArgument as error:
                raise WorkflowException(f"{where}: {error}") from None
        extra = 0
        limit = self.max_workflow_workers
        if provider and region and limit is not None and maximum + self._current_workers > limit:
            wanted = maximum
            maximum = min(max(limit - self._current_workers, 0), wanted)
            extra = wanted - maximum
        self._current_workers += maximum
        plan = BatchPlan(
            name=f"{self.name}.{batch}", shortname=batch, flavor=flavor, concurrency=concurrency,
            provider=provider, region=region, maximum_workers=maximum, extra_workers=extra,
            tasks_per_worker=tasks_per_worker or concurrency * (rounds or 1),
            prefetch=given(prefetch, self.prefetch) or 0,
        )  # fmt: skip
        self._plans[batch] = plan
        return plan

    # -- submitting and running ---------------------------------------------------------

    def submit(self) -> list[native.Step]:
        """Submit the steps not submitted yet (all or none) and set the recruiters."""
        return self._native.submit()

    def recruit(self) -> None:
        """Create or update the recruiter of each batch that names a provider."""
        for plan in self._plans.values():
            if plan.provider and plan.maximum_workers > 0:
                recruiter_set(
                    self._client.connection, plan.name, plan.provider, plan.maximum_workers,
                    flavor=plan.flavor, region=plan.region, concurrency=plan.concurrency,
                    prefetch=plan.prefetch, tasks_per_worker=plan.tasks_per_worker,
                )  # fmt: skip

    def run(self, refresh: float = 30) -> WorkflowSummary:
        """Submit, then show the progress of every batch until no task is left to run
        (a task whose requirement failed is canceled, so this always ends).

        Returns:
            The summary: counts per batch and the tasks that did not succeed.
        """
        self.submit()
        return follow(self.name, self._native.progress, self._native.unsuccessful,
                      refresh=min(max(refresh, 0.1), POLL_SECONDS), timeout=None,
                      live=sys.stderr.isatty())  # fmt: skip

    # -- acting on a submitted workflow -------------------------------------------------

    def _batches(self) -> list[str]:
        return [p.name for p in self._plans.values() if self._client.batch_exists(p.name)]

    def clean(
        self, force: bool = False, download_logs: bool = True, log_destination: Any = UNSET
    ) -> None:
        """Remove what the workflow left: with ``force``, its batches and all their
        tasks; else its succeeded tasks (after saving the logs of every task into
        ``log_destination``, default the workflow's name: ``<task>_output.log`` and
        ``<task>_error.log``) and its recruiters. Failed tasks stay for inspection."""
        if self._cleaned:
            return
        connection = self._client.connection
        if force:
            for batch in self._batches():
                batch_delete(connection, batch)
            self._cleaned = True
            return
        destination = self.name if log_destination is UNSET else log_destination
        succeeded = []
        for step in self._steps:
            if step.native.task_id is None:
                continue
            if download_logs and destination is not None:
                self._save_logs(step, str(destination))
            if step.status == TaskStatus.SUCCEEDED:
                succeeded.append(step.task_id)
        if succeeded:
            task_delete(connection, succeeded)
        for batch in self._batches():
            for recruiter in recruiter_list(connection, batch):
                recruiter_delete(connection, recruiter["recruiter_id"])
        self._cleaned = True

    @staticmethod
    def _save_logs(step: Step, destination: str) -> None:
        os.makedirs(destination, exist_ok=True)
        base = os.path.join(destination, step.name.replace("/", "_"))
        for suffix, text in (("output", step.get_output()), ("error", step.get_error())):
            if text is not None:
                with open(f"{base}_{suffix}.log", "a", encoding="utf-8") as stream:
                    stream.write(text)

    def pause(self, suspend: bool = False) -> None:
        """Stop giving the workflow's tasks to workers; ``suspend`` also pauses the
        running ones (v1's SIGTSTP)."""
        for batch in self._batches():
            batch_pause(self._client.connection, batch)
            if suspend:
                batch_signal(self._client.connection, batch, SignalKind.PAUSE)
        self._suspended = self._suspended or suspend

    def unpause(self) -> None:
        """Undo `pause` (and resume suspended tasks)."""
        for batch in self._batches():
            batch_resume(self._client.connection, batch)
            if self._suspended:
                batch_signal(self._client.connection, batch, SignalKind.RESUME)
        self._suspended = False

    def quit(self) -> None:
        """v1 set a flag nothing read; kept so that scripts calling it still run."""

    def download(self, uri_list: str | Sequence[str] | None = None,
                 destination: str | None = None) -> None:  # fmt: skip
        """Download every step's output into ``destination/<step name>/`` (default:
        here), or the given URIs into ``destination``."""
        destination = destination or os.getcwd()
        if uri_list is None:
            for step in self._steps:
                if step.output is not None:
                    fetch.get(step.output, os.path.join(destination, step.name) + "/")
            return
        for uri in [uri_list] if isinstance(uri_list, str) else uri_list:
            fetch.get(uri, destination.rstrip("/") + "/")
