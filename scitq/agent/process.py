"""Run one task command: bare in its own process group, or in a container.

The command runs in a new session (its own process group) with standard input closed
and the work folder as its current directory, in the environment
`scitq.agent.environment` builds (the agent's own minus its credentials, overlaid by the
task's variables; a container gets only the task's, see `scitq.agent.containers`).

Standard output and error are read concurrently in chunks of at most 64 KiB as they come
and handed to the sink: nothing is line-buffered, a 100 MB line is never held whole.
When the command has exited, processes it left in the background that still hold its
output open get ``DRAIN_SECONDS`` to finish, then the whole process group is killed.

Exit codes follow the shell: a process killed by signal N reports ``128 + N``. The
failure class is ``None`` on success, else ``timeout`` (the run timeout expired: TERM to
the group, KILL after the grace period; the timeout counts wall time, paused or not),
``canceled`` (``kill()``, or a term/kill signal), ``oom`` (see ``scitq.agent.usage`` for
the heuristic) or ``exit`` (also for a command that could not start: no return code).

A bare command is reaped here with ``os.wait4`` once its pidfd says it exited (in a
thread of its own where there is no pidfd), to get its rusage (``scitq.agent.usage``
explains how usage is measured). It is therefore spawned by `scitq.agent.spawn` rather
than asyncio's subprocess API, whose child watcher would reap the process first;
asyncio's default watchers wait for their own PIDs only, so both can live in one agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shlex
import signal as signals
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scitq.agent import containers
from scitq.agent.environment import inherited_environment, task_environment
from scitq.agent.spawn import Spawned, spawn
from scitq.agent.usage import (
    FIRST_SAMPLE_SECONDS,
    OOM_COUNT_MAX_AGE_SECONDS,
    SAMPLE_INTERVAL_SECONDS,
    ProcessTreeSampler,
    oom_kill_count,
    oom_kills_since,
    oom_reason,
    own_peak_rss_bytes,
)
from scitq.states import FailureClass

logger = logging.getLogger(__name__)

OutputSink = Callable[[str, bytes], None]

#: Largest chunk read from a pipe at once.
READ_CHUNK_BYTES = 64 * 1024
#: After exit, how long background processes may keep the output pipes open.
DRAIN_SECONDS = 2.0
_SIGNALS = {
    "pause": signals.SIGSTOP,
    "resume": signals.SIGCONT,
    "term": signals.SIGTERM,
    "kill": signals.SIGKILL,
}
_STREAMS = ("stdout", "stderr")
# Exit codes a shell uses for commands it could not run; container runtimes use them too
# (and 125 for their own errors), then their message is the last line of stderr.
_SHELL_CODES = {126: "command not executable", 127: "command not found"}
_RUNTIME_CODES = (125, 126, 127)
_STDERR_TAIL_BYTES = 4096
# How many times to look for a container's first process before giving up measuring.
_CONTAINER_PID_ATTEMPTS = 20

_Exit = tuple[int | None, resource.struct_rusage | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandSpec:
    """What to run and how (see the module docstring for the environment)."""

    command: str
    shell: bool
    env: Mapping[str, str]
    work_dir: Path
    cpu: int
    run_timeout_seconds: float | None = None
    kill_grace_seconds: float = 10.0
    container: str | None = None
    container_options: str | None = None
    container_runtime: str | None = None
    #: The agent found or pulled the image already: no look-up before the run.
    image_ready: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """How a command ended and what it used (``None``: unknown or not measured)."""

    return_code: int | None
    failure_class: FailureClass | None
    failure_reason: str | None
    wall_seconds: float
    cpu_user_seconds: float | None
    cpu_system_seconds: float | None
    peak_rss_bytes: int | None


class RunningCommand:
    """One started command; ``wait()`` or ``kill()`` gives its result."""

    def __init__(
        self,
        spec: CommandSpec,
        sink: OutputSink,
        process: Spawned | None,
        *,
        container: containers.Container | None = None,
        failure_reason: str | None = None,
        failure_class: FailureClass = FailureClass.EXIT,
    ) -> None:
        self._spec = spec
        self._sink = sink
        self._process = process
        self._container = container
        self._not_started = failure_reason
        self._not_started_class = failure_class
        self._loop = asyncio.get_running_loop()
        self._started = time.monotonic()
        self._exited: asyncio.Future[_Exit] = self._loop.create_future()
        self._open_streams = set(_STREAMS)
        self._streams_closed = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stop_reason: str | None = None
        self._signal_sent: str | None = None
        self._timed_out = False
        self._stderr_tail = b""
        self._sink_failed = False
        self._sampler = ProcessTreeSampler()
        self._oom_kills_at_start = oom_kill_count(max_age=OOM_COUNT_MAX_AGE_SECONDS)
        # Read after the spawn (see ProcessTreeSampler.usage).
        self._spawner_peak_rss = own_peak_rss_bytes()
        self._background: set[asyncio.Task[None]] = set()
        self._outcome: asyncio.Task[CommandResult] | None = None

    @classmethod
    async def start(cls, spec: CommandSpec, sink: OutputSink) -> RunningCommand:
        """Start ``spec``; a command that cannot start gives a failed result, not an error."""
        if not spec.work_dir.is_dir():
            return cls(spec, sink, None, failure_reason=f"no work folder {spec.work_dir}")
        env = task_environment(spec.env, spec.work_dir, spec.cpu, in_container=bool(spec.container))
        container = None
        if spec.container:
            prepared = await containers.prepare(
                image=spec.container,
                runtime_setting=spec.container_runtime,
                command=spec.command,
                shell=spec.shell,
                work_dir=spec.work_dir,
                cpu=spec.cpu,
                env=env,
                options=spec.container_options,
                check_image=not spec.image_ready,
            )
            if isinstance(prepared, containers.Unrunnable):
                return cls(spec, sink, None, failure_reason=prepared.reason,
                           failure_class=prepared.failure_class)  # fmt: skip
            container, arguments = prepared, prepared.arguments
        elif spec.shell:
            arguments = ["/bin/sh", "-c", spec.command]
        else:
            try:
                arguments = shlex.split(spec.command)
            except ValueError as error:  # unbalanced quotes
                return cls(spec, sink, None, failure_reason=f"cannot parse the command: {error}")
        if not arguments:
            return cls(spec, sink, None, failure_reason="the command is empty")
        try:
            process = spawn(arguments, {**inherited_environment(), **env}, spec.work_dir)
        except ValueError as error:  # an environment the system cannot pass (old rows)
            return cls(spec, sink, None, failure_reason=f"cannot start the command: {error}")
        except OSError as error:
            what = "container runtime" if container else "command"
            problem = {FileNotFoundError: "not found", PermissionError: "not executable"}
            detail = problem.get(type(error)) or error.strerror or str(error)
            reason = f"cannot start the {what} {arguments[0]!r}: {detail}"
            return cls(spec, sink, None, failure_reason=reason)
        running = cls(spec, sink, process, container=container)
        running._watch(process)
        return running

    def _watch(self, process: Spawned) -> None:
        for stream, fd in zip(_STREAMS, self._pipe_fds(), strict=True):
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._read, stream, fd)
        try:
            pidfd = os.pidfd_open(process.pid)
        except (AttributeError, OSError):  # no pidfd (Linux < 5.3): a thread waits instead
            thread = threading.Thread(target=self._reap, args=(process.pid,), daemon=True)
            thread.start()
        else:
            self._loop.add_reader(pidfd, self._reap_exited, process.pid, pidfd)
        self._spawn(self._sample())

    def _reap_exited(self, pid: int, pidfd: int) -> None:
        # The pidfd became readable: the command has exited, so wait4 returns at once.
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        self._reap(pid)

    def _pipe_fds(self) -> tuple[int, int]:
        assert self._process is not None
        return self._process.stdout, self._process.stderr

    def _reap(self, pid: int) -> None:
        # In the loop once the pidfd says the command exited, or in a thread of its own
        # where wait4 blocks until it does.
        result: _Exit
        try:
            _, status, rusage = os.wait4(pid, 0)
        except ChildProcessError:  # reaped by someone else: the exit status is lost
            result = (None, None)
        else:
            code = os.waitstatus_to_exitcode(status)
            # The rusage of a container's runtime client says nothing about the task.
            result = (128 - code if code < 0 else code, None if self._container else rusage)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(self._set_exited, result)

    def _set_exited(self, result: _Exit) -> None:
        if not self._exited.done():
            self._exited.set_result(result)

    def _read(self, stream: str, fd: int) -> None:
        try:
            data = os.read(fd, READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_stream(stream, fd)
            return
        if stream == "stderr":
            self._stderr_tail = (self._stderr_tail + data)[-_STDERR_TAIL_BYTES:]
        try:
            self._sink(stream, data)
        except Exception:
            if not self._sink_failed:  # one report is enough
                logger.exception("output sink failed", extra={"stream": stream})
            self._sink_failed = True

    def _close_stream(self, stream: str, fd: int) -> None:
        if stream in self._open_streams:
            self._loop.remove_reader(fd)
            self._open_streams.discard(stream)
        if not self._open_streams:
            self._streams_closed.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _sample(self) -> None:
        # A short command is over before its first sample: its wait4 rusage is exact, and
        # attaching (reading /proc) would cost more than the command itself.
        if await self._exits_within(FIRST_SAMPLE_SECONDS):
            return
        attempts = 0
        while not self._exited.done():
            if self._sampler.attached:
                self._sampler.sample()
            elif self._container is None:
                assert self._process is not None
                self._sampler.attach(self._process.pid)
            elif attempts < _CONTAINER_PID_ATTEMPTS:
                attempts += 1
                pid = await self._container.pid()
                if pid is not None:
                    self._sampler.attach(pid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), SAMPLE_INTERVAL_SECONDS)

    def signal(self, kind: str) -> None:
        """Deliver "pause", "resume", "term" or "kill" to the process group or container."""
        if kind not in _SIGNALS:
            raise ValueError(f"unknown signal {kind!r}: use one of {', '.join(_SIGNALS)}")
        if self._process is None or self._exited.done():
            return
        if kind in ("term", "kill"):
            self._signal_sent = kind
        if self._container:
            self._spawn(self._container.signal(kind))
            return
        self._signal_group(_SIGNALS[kind])
        if kind == "term":
            self._signal_group(signals.SIGCONT)  # a paused process must see it now

    def _signal_group(self, signal_number: int) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal_number)

    async def wait(self) -> CommandResult:
        """Stream the output until the command ends (or times out); its result."""
        if self._process is None:
            return CommandResult(
                return_code=None,
                failure_class=self._not_started_class,
                failure_reason=self._not_started,
                wall_seconds=0.0,
                cpu_user_seconds=None,
                cpu_system_seconds=None,
                peak_rss_bytes=None,
            )
        if self._outcome is None:
            self._outcome = self._loop.create_task(self._run())
        return await asyncio.shield(self._outcome)

    async def kill(self, reason: str) -> CommandResult:
        """Stop the command (TERM, grace period, KILL); its result, class ``canceled``."""
        if self._stop_reason is None and not self._exited.done():
            self._stop_reason = reason
            self._stop_requested.set()
        return await self.wait()

    async def _run(self) -> CommandResult:
        timeout = self._spec.run_timeout_seconds
        remaining = None if timeout is None else timeout - (time.monotonic() - self._started)
        stop = self._loop.create_task(self._stop_requested.wait())
        either: list[asyncio.Future[Any]] = [self._exited, stop]
        await asyncio.wait(either, timeout=remaining, return_when="FIRST_COMPLETED")
        stop.cancel()
        if not self._exited.done():
            self._timed_out = not self._stop_requested.is_set()
            await self._terminate()
        return_code, rusage = await self._exited
        wall = time.monotonic() - self._started
        await self._drain()
        if self._background:
            await asyncio.wait(self._background, timeout=containers.RUNTIME_COMMAND_TIMEOUT_SECONDS)
        if self._container:
            await self._container.remove()
        usage = self._sampler.usage(rusage, spawner_peak_rss=self._spawner_peak_rss)
        failure_class, reason = self._classify(return_code, usage.peak_rss_bytes)
        return CommandResult(
            return_code=return_code,
            failure_class=failure_class,
            failure_reason=reason,
            wall_seconds=wall,
            cpu_user_seconds=usage.cpu_user_seconds,
            cpu_system_seconds=usage.cpu_system_seconds,
            peak_rss_bytes=usage.peak_rss_bytes,
        )

    async def _terminate(self) -> None:
        self.signal("term")
        grace = self._spec.kill_grace_seconds
        if await self._exits_within(grace):
            return
        self.signal("kill")
        if self._container and await self._exits_within(grace):
            return
        # The runtime client itself does not stop: the container is removed afterwards.
        self._signal_group(signals.SIGKILL)
        await self._exits_within(None)

    async def _exits_within(self, seconds: float | None) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exited), seconds)
        return self._exited.done()

    async def _drain(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._streams_closed.wait(), DRAIN_SECONDS)
        if not self._streams_closed.is_set():
            # Background processes still hold the output: they die with their group.
            self._signal_group(signals.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._streams_closed.wait(), DRAIN_SECONDS)
        for stream, fd in zip(_STREAMS, self._pipe_fds(), strict=True):
            self._close_stream(stream, fd)
        assert self._process is not None
        self._process.close()

    def _classify(
        self, return_code: int | None, peak_rss: int | None
    ) -> tuple[FailureClass | None, str | None]:
        if self._timed_out:
            return (
                FailureClass.TIMEOUT,
                f"run timeout of {self._spec.run_timeout_seconds:g} s exceeded",
            )
        if self._stop_reason is not None:
            return FailureClass.CANCELED, self._stop_reason
        if return_code == 0:
            return None, None
        if return_code is None:
            return (
                FailureClass.EXIT,
                "the exit status was lost (the process was reaped outside scitq)",
            )
        if self._signal_sent:
            return (
                FailureClass.CANCELED,
                f"stopped by a {self._signal_sent!r} signal (exit code {return_code})",
            )
        reason = oom_reason(
            return_code,
            peak_rss_bytes=peak_rss,
            memory_limit_bytes=self._sampler.memory_limit_bytes,
            oom_kills_during_run=oom_kills_since(self._oom_kills_at_start),
        )
        if reason:
            return FailureClass.OOM, reason
        reason = f"exit code {return_code}"
        if return_code > 128:
            with contextlib.suppress(ValueError):
                reason += f" (killed by {signals.Signals(return_code - 128).name})"
        elif self._container and return_code in _RUNTIME_CODES:
            message = containers.runtime_message(self._stderr_tail)
            reason += f": {message or _SHELL_CODES.get(return_code)}"
        elif return_code in _SHELL_CODES:
            reason += f": {_SHELL_CODES[return_code]}"
        return FailureClass.EXIT, reason
