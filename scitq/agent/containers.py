"""Containers through the ``docker`` or ``podman`` command line.

A task with a ``container`` image runs as ``<runtime> run --rm --pull=never --name
scitq-... IMAGE COMMAND`` with its work folders mounted at ``/input``, ``/output``,
``/resource`` (read-only) and ``/tmp``, ``--cpus`` set to the task's share, and the
task's environment passed as ``-e NAME`` only: the values travel in the environment of
the runtime's process, never on its command line, so ``ps`` does not show them.

Choices worth knowing:

* The runtime is the configured one, else ``podman`` if found, else ``docker``: podman
  needs no daemon, so being installed means it works, whereas a ``docker`` client is
  often installed without a reachable daemon.
* The run itself never pulls (``--pull=never``): the agent pulls a missing image before,
  in the execution's download phase (`scitq.agent.images`); the image is looked up first
  (unless the agent did) so that a missing image, or a runtime that cannot answer, is a
  clear failed execution.
* ``--log-driver=none``: the output is read from the attached streams; a second copy in
  the runtime's own log file would only fill the disk.
* Signals go through the runtime (``pause``, ``unpause``, ``kill --signal ...``) to the
  container's first process. A shell as PID 1 ignores TERM unless it traps it, so a
  container stopped by TERM often needs the KILL that follows the grace period; put
  ``--init`` in the task's container options to forward TERM to the command.
* The mounts name host paths: with a remote Docker daemon they must exist on the
  daemon's machine, and resource usage cannot be measured (the processes are not local).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from scitq.states import FailureClass

logger = logging.getLogger(__name__)

#: Where the work folders appear inside a container.
CONTAINER_PATHS = {"INPUT": "/input", "OUTPUT": "/output", "RESOURCE": "/resource", "TEMP": "/tmp"}
#: Label put on every container scitq starts, to find leftovers.
CONTAINER_LABEL = "scitq.execution"
#: Seconds a short runtime command (inspect, kill, rm) may take.
RUNTIME_COMMAND_TIMEOUT_SECONDS = 30.0
_SEARCH_ORDER = ("podman", "docker")
_RUNTIME_SIGNAL_COMMANDS = {
    "pause": ["pause"],
    "resume": ["unpause"],
    "term": ["kill", "--signal", "TERM"],
    "kill": ["kill", "--signal", "KILL"],
}


def find_runtime(configured: str | None) -> str | None:
    """The path of the container runtime to use, or ``None`` if none is installed.

    Args:
        configured: ``"podman"``, ``"docker"`` or a path; ``None`` searches podman then
            docker on ``PATH``.
    """
    for name in (configured,) if configured else _SEARCH_ORDER:
        path = shutil.which(name)
        if path:
            return path
    return None


def container_name(env: Mapping[str, str]) -> str:
    """A unique container name, readable in ``podman ps``."""
    parts = ["scitq"]
    for variable in ("SCITQ_TASK_ID", "SCITQ_ATTEMPT"):
        value = env.get(variable, "")
        if value.isalnum():
            parts.append(value)
    parts.append(uuid.uuid4().hex[:8])
    return "-".join(parts)


@dataclass(slots=True, kw_only=True)
class Container:
    """One container run: its command line, and the runtime commands that act on it."""

    runtime: str
    name: str
    arguments: list[str]
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _paused: bool = False

    async def signal(self, kind: str) -> None:
        """Deliver "pause", "resume", "term" or "kill"; calls are applied in order."""
        # One at a time: a resume must not overtake its pause.
        async with self._lock:
            if kind in ("term", "kill") and self._paused:
                await self._runtime_signal("resume")  # a frozen container would not act
            await self._runtime_signal(kind)
            if kind in ("pause", "resume"):
                self._paused = kind == "pause"

    async def _runtime_signal(self, kind: str) -> None:
        code, output = await run_runtime_command(
            self.runtime, *_RUNTIME_SIGNAL_COMMANDS[kind], self.name
        )
        if code != 0:
            # Usual reasons: the container is not created yet or already gone.
            logger.info(
                "container signal not delivered",
                extra={"container": self.name, "signal": kind, "detail": output},
            )

    async def pid(self) -> int | None:
        """The host PID of the container's first process, once it runs (else ``None``)."""
        code, output = await run_runtime_command(
            self.runtime, "inspect", "--format", "{{.State.Pid}}", self.name, timeout=10.0
        )
        if code != 0 or not output.isdigit() or int(output) <= 0:
            return None
        pid = int(output)
        # A PID from a remote daemon means nothing here: only trust a process of this host.
        return pid if os.path.exists(f"/proc/{pid}") else None

    async def remove(self) -> None:
        """Remove the container if ``--rm`` left it (killed client, runtime error)."""
        code, output = await run_runtime_command(self.runtime, "rm", "--force", self.name)
        if code != 0 and "no such container" not in output.lower():
            logger.warning(
                "container not removed",
                extra={"container": self.name, "detail": output, "code": code},
            )


@dataclass(frozen=True, slots=True)
class Unrunnable:
    """Why a task's container cannot run: the execution's failure reason and class
    (``runtime`` when the worker's runtime is missing or does not answer: the worker's
    fault, not the task's)."""

    reason: str
    failure_class: FailureClass


async def prepare(
    *,
    image: str,
    runtime_setting: str | None,
    command: str,
    shell: bool,
    work_dir: Path,
    cpu: int,
    env: Mapping[str, str],
    options: str | None,
    check_image: bool = True,
) -> Container | Unrunnable:
    """The container to run, or why it cannot run (no runtime, missing image, bad options).

    ``check_image`` False skips the image look-up (the agent found or pulled it already).
    """
    runtime = find_runtime(runtime_setting)
    if runtime is None:
        wanted = runtime_setting or "podman or docker"
        return Unrunnable(
            f"no container runtime found ({wanted} is not on PATH)", FailureClass.RUNTIME
        )
    problem = await missing_image(runtime, image) if check_image else None
    if problem:
        return problem
    name = container_name(env)
    try:
        arguments = run_arguments(
            runtime,
            name=name,
            image=image,
            command=command,
            shell=shell,
            work_dir=work_dir,
            cpu=cpu,
            env_names=sorted(env),
            options=options,
        )
    except ValueError as error:  # shlex: unbalanced quotes
        return Unrunnable(
            f"cannot parse the command or the container options: {error}", FailureClass.EXIT
        )
    return Container(runtime=runtime, name=name, arguments=arguments)


def run_arguments(
    runtime: str,
    *,
    name: str,
    image: str,
    command: str,
    shell: bool,
    work_dir: Path,
    cpu: int,
    env_names: list[str],
    options: str | None,
) -> list[str]:
    """The full ``run`` command line (no environment values on it)."""
    mounts = [
        f"{work_dir / 'input'}:/input",
        f"{work_dir / 'output'}:/output",
        f"{work_dir / 'resource'}:/resource:ro",
        f"{work_dir / 'tmp'}:/tmp",
    ]
    arguments = [runtime, "run", "--rm", "--pull=never", "--log-driver=none"]
    arguments += ["--name", name, "--label", f"{CONTAINER_LABEL}={name}"]
    if cpu > 0:
        # Runtimes refuse more CPUs than the machine has.
        arguments += ["--cpus", str(min(cpu, os.cpu_count() or cpu))]
    for mount in mounts:
        arguments += ["--volume", mount]
    for env_name in env_names:
        arguments += ["--env", env_name]
    arguments += shlex.split(options or "")
    arguments.append(image)
    arguments += ["sh", "-c", command] if shell else shlex.split(command)
    return arguments


def runtime_message(stderr_tail: bytes) -> str | None:
    """The runtime's error line at the end of a failed run's stderr, if any."""
    lines = stderr_tail.decode(errors="replace").strip().splitlines()
    errors = [line for line in lines if line.lower().startswith("error")]
    return (errors or lines)[-1] if lines else None


async def run_runtime_command(
    runtime: str, *arguments: str, timeout: float = RUNTIME_COMMAND_TIMEOUT_SECONDS
) -> tuple[int | None, str]:
    """Run a short runtime command; returns its exit code (``None``: timed out) and output."""
    try:
        process = await asyncio.create_subprocess_exec(
            runtime,
            *arguments,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as error:
        return 127, str(error)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return None, f"{runtime} {' '.join(arguments)} did not answer within {timeout:g} s"
    return process.returncode, output.decode(errors="replace").strip()


async def missing_image(runtime: str, image: str) -> Unrunnable | None:
    """Why ``image`` cannot be run with ``runtime``, or ``None`` if it is available locally."""
    code, output = await run_runtime_command(
        runtime, "image", "inspect", "--format", "{{.Id}}", image
    )
    if code == 0:
        return None
    detail = output.splitlines()[-1] if output else f"exit code {code}"
    if code is None or is_daemon_down(output):
        return Unrunnable(daemon_down_reason(runtime, image, detail), FailureClass.RUNTIME)
    return Unrunnable(
        f"container image {image!r} is not available to {runtime} ({detail}): "
        "pull or load it on the worker first",
        FailureClass.DOWNLOAD,
    )


def is_daemon_down(output: str) -> bool:
    """Whether a runtime's output says its daemon (or service socket) cannot be reached."""
    lowered = output.lower()
    return any(sign in lowered for sign in NO_DAEMON_SIGNS)


def daemon_down_reason(runtime: str, image: str, detail: str) -> str:
    """The failure reason of a runtime that does not answer."""
    return (
        f"{runtime} does not answer, the image {image!r} could not be looked up ({detail}): "
        f"is the {runtime} daemon running on this worker?"
    )


#: What docker and podman say when their daemon (or service socket) cannot be reached.
NO_DAEMON_SIGNS = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
    "cannot connect to podman",
    "connection refused",
)
