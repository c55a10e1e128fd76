"""One execution as the agent holds it, and the pieces of its result the agent builds."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scitq.agent.output import ExecutionOutput
from scitq.agent.process import CommandResult, CommandSpec, RunningCommand
from scitq.config import AgentSettings
from scitq.states import ExecutionStatus, FailureClass, TaskStatus


@dataclass(eq=False)
class Held:
    """An execution this agent holds, from claim to finish."""

    claim: dict[str, Any]
    work_dir: Path
    output: ExecutionOutput
    command: RunningCommand | None = None
    dead: bool = False  # the database says it is no longer ours
    staging: asyncio.Future[int] | None = None  # downloads, in threads
    cancel_staging: threading.Event = field(default_factory=threading.Event)
    bytes_in: int | None = None
    bytes_out: int | None = None
    applied_signals: set[int] = field(default_factory=set)
    #: a cache hit (use_cache): the earlier execution whose output it reuses
    cached_from: int | None = None

    @property
    def execution_id(self) -> int:
        return int(self.claim["execution_id"])


def command_spec(held: Held, settings: AgentSettings, concurrency: int) -> CommandSpec:
    """What to run for ``held``: its command, environment, folder, limits and container."""
    claim = held.claim
    env = {str(k): str(v) for k, v in (claim.get("env") or {}).items()}
    env.update(SCITQ_TASK_ID=str(claim["task_id"]), SCITQ_ATTEMPT=str(claim["attempt"]))
    return CommandSpec(
        command=claim["command"],
        shell=bool(claim["shell"]),
        env=env,  # the process adds INPUT, OUTPUT, RESOURCE, TEMP and CPU
        work_dir=held.work_dir,
        cpu=max(1, (os.cpu_count() or 1) // max(1, concurrency)),
        run_timeout_seconds=claim["run_timeout_seconds"],
        kill_grace_seconds=settings.kill_grace_seconds,
        container=claim["container"],
        container_options=claim["container_options"],
        container_runtime=settings.container_runtime,
        image_ready=bool(claim["container"]),  # the agent's download phase made sure
    )


def not_started(reason: str, failure_class: FailureClass | None = None) -> CommandResult:
    """The result of an execution whose command never ran."""
    return CommandResult(
        return_code=None, failure_class=failure_class, failure_reason=reason, wall_seconds=0.0,
        cpu_user_seconds=None, cpu_system_seconds=None, peak_rss_bytes=None,
    )  # fmt: skip


def with_upload_failure(result: CommandResult, failure: str) -> CommandResult:
    """``result`` once its output could not be uploaded: a success becomes an ``upload``
    failure; a failure keeps its class and says the upload failed too."""
    if result.failure_class is None and result.return_code == 0:
        return dataclasses.replace(result, failure_class=FailureClass.UPLOAD,
                                   failure_reason=failure)  # fmt: skip
    reason = f"{result.failure_reason}; the output upload failed too: {failure}"
    return dataclasses.replace(result, failure_reason=reason)


def describe_end(claim: dict[str, Any], result: CommandResult) -> str:
    """One line for the agent's log: which task ended, how, and how long it ran."""
    ok = result.failure_class is None and result.return_code == 0
    outcome = str(TaskStatus.SUCCEEDED if ok else ExecutionStatus.FAILED)
    if not ok:
        why = [str(result.failure_class or FailureClass.EXIT)]
        if result.return_code is not None:
            why.append(f"exit code {result.return_code}")
        outcome += f" ({', '.join(why)})"
    name = f" {claim['name']!r}" if claim.get("name") else ""
    return (
        f"task {claim['task_id']}{name} of batch {claim['batch']}, attempt {claim['attempt']}: "
        f"{outcome} in {result.wall_seconds:.1f} s"
    )


def finish_report(held: Held, result: CommandResult) -> dict[str, Any]:
    """The report of ``execution_finish_v1`` for an execution that ended with ``result``."""
    report: dict[str, Any] = {
        "execution_id": held.execution_id,
        "return_code": result.return_code,
        "failure_class": result.failure_class,
        "failure_reason": result.failure_reason,
        "wall_seconds": result.wall_seconds,
        "cpu_user_seconds": result.cpu_user_seconds,
        "cpu_system_seconds": result.cpu_system_seconds,
        "peak_rss_bytes": result.peak_rss_bytes,
        "bytes_in": held.bytes_in,
        "bytes_out": held.bytes_out,
    }
    return {key: value for key, value in report.items() if value is not None}
