"""Container images, pulled on first use: once per worker and image, before the command.

A task with a container image goes through `ImagePuller.ensure` during its ``downloading``
phase (so the time a pull takes is the phase's, recorded like an input download): the
image is looked up (``<runtime> image inspect``) and, when missing, pulled
(``<runtime> pull``), with one lock per image so that concurrent tasks wait for a single
pull. An image found or pulled is remembered for the agent's life: later tasks skip the
look-up, and the command then runs with ``--pull=never``.

Failures are one line each, with a class that says whose fault it is:

* ``runtime``: no runtime on ``PATH``, or a runtime that does not answer (a Docker
  daemon down): the machine's fault, whatever the task;
* ``download``: the image is missing and cannot be pulled (unknown name, registry
  unreachable, credentials refused), or pulling is turned off (``--no-pull``).

Registry credentials come from the agent's settings only: ``registry_auth_file`` is an
auth file as ``podman login --authfile FILE`` (or ``docker login``) writes it, given to
podman as ``--authfile`` and to docker as the ``config.json`` of ``--config DIR``. Their
content never reaches a task row, a log line or a command line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scitq.agent.containers import (
    Unrunnable,
    daemon_down_reason,
    find_runtime,
    is_daemon_down,
    run_runtime_command,
)
from scitq.config import AgentSettings
from scitq.states import FailureClass, OutputStream

logger = logging.getLogger(__name__)

#: Seconds a failed pull is remembered: tasks that waited for it fail with it at once.
FAILURE_MEMORY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class ImageReady:
    """The image is there; ``pulled_seconds`` is how long this call's pull took (None: no
    pull was needed)."""

    pulled_seconds: float | None = None


class ImagePuller:
    """Finds or pulls the images of an agent's tasks, one pull per image at a time."""

    def __init__(
        self,
        runtime_setting: str | None,
        *,
        pull: bool = True,
        auth_file: Path | None = None,
        pull_timeout_seconds: float = 1800.0,
    ) -> None:
        self._runtime_setting = runtime_setting
        self._pull = pull
        self._auth_file = auth_file
        self._timeout = pull_timeout_seconds
        self._runtime: str | None = None
        self._ready: set[tuple[str, str]] = set()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._failed: dict[tuple[str, str], tuple[float, Unrunnable]] = {}
        #: Pulls made, for tests.
        self.pulls = 0

    @classmethod
    def from_settings(cls, settings: AgentSettings) -> ImagePuller:
        return cls(
            settings.container_runtime,
            pull=settings.pull_images,
            auth_file=settings.registry_auth_file,
            pull_timeout_seconds=settings.pull_timeout_seconds,
        )

    async def prepare(self, image: str, write: Callable[[str, bytes], None]) -> Unrunnable | None:
        """`ensure` for a task: a pull is told in its log (``scitq`` stream, with its time)."""
        outcome = await self.ensure(image)
        if isinstance(outcome, Unrunnable):
            return outcome
        if outcome.pulled_seconds is not None:
            line = f"pulled container image {image} in {outcome.pulled_seconds:.1f} s\n"
            write(OutputStream.SCITQ, line.encode())
        return None

    async def ensure(self, image: str) -> ImageReady | Unrunnable:
        """Make ``image`` available to the runtime, pulling it if needed and allowed."""
        # found once (a PATH search costs more than the rest of a cached look-up)
        runtime = self._runtime = self._runtime or find_runtime(self._runtime_setting)
        if runtime is None:
            wanted = self._runtime_setting or "podman or docker"
            return Unrunnable(
                f"no container runtime found ({wanted} is not on PATH)", FailureClass.RUNTIME
            )
        key = (runtime, image)
        if key in self._ready:
            return ImageReady()
        lock = self._locks.setdefault(key, asyncio.Lock())
        waited = lock.locked()
        async with lock:
            if key in self._ready:
                return ImageReady()
            failed = self._failed.get(key)
            if waited and failed and time.monotonic() - failed[0] < FAILURE_MEMORY_SECONDS:
                return failed[1]  # the pull this task waited for failed just now
            outcome = await self._find_or_pull(runtime, image)
            if isinstance(outcome, ImageReady):
                self._ready.add(key)
                self._failed.pop(key, None)
            else:
                self._failed[key] = (time.monotonic(), outcome)
            return outcome

    async def _find_or_pull(self, runtime: str, image: str) -> ImageReady | Unrunnable:
        code, output = await run_runtime_command(
            runtime, "image", "inspect", "--format", "{{.Id}}", image
        )
        if code == 0:
            return ImageReady()
        if code is None or is_daemon_down(output):
            return _daemon_problem(runtime, image, _last_line(output, code))
        if not self._pull:
            return Unrunnable(
                f"container image {image!r} is not available to {runtime} and pulling is "
                "off (--no-pull): pull or load it on the worker first",
                FailureClass.DOWNLOAD,
            )
        return await self._pull_image(runtime, image)

    async def _pull_image(self, runtime: str, image: str) -> ImageReady | Unrunnable:
        arguments = ["pull", "--quiet"]
        if self._auth_file is not None:
            if "docker" in Path(runtime).name:
                arguments = ["--config", str(self._auth_file.parent), *arguments]
            else:
                arguments += ["--authfile", str(self._auth_file)]
        started = time.monotonic()
        self.pulls += 1
        code, output = await run_runtime_command(runtime, *arguments, image, timeout=self._timeout)
        seconds = time.monotonic() - started
        if code == 0:
            logger.info(
                "pulled container image %s in %.1f s", image, seconds,
                extra={"action": "image_pull", "image": image, "seconds": seconds},
            )  # fmt: skip
            return ImageReady(pulled_seconds=seconds)
        detail = _last_line(output, code)
        if code is not None and is_daemon_down(output):
            return _daemon_problem(runtime, image, detail)
        return Unrunnable(
            f"cannot pull container image {image!r} with {runtime}: {detail}",
            FailureClass.DOWNLOAD,
        )


def _last_line(output: str, code: int | None) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    if errors or lines:
        return (errors or lines)[-1]
    return "timed out" if code is None else f"exit code {code}"


def _daemon_problem(runtime: str, image: str, detail: str) -> Unrunnable:
    return Unrunnable(daemon_down_reason(runtime, image, detail), FailureClass.RUNTIME)
