"""Starting a command cheaply: ``os.posix_spawn`` with two pipes and a new session.

``subprocess.Popen`` with pipes, a new session and a working folder costs the agent
about twice the CPU of a ``posix_spawn`` (bench/RESULTS.md): it cannot use
``posix_spawn`` with ``cwd`` or ``start_new_session``, encodes the environment anew, and
waits on an extra pipe for the child's exec. Here the child is spawned by glibc's
``posix_spawn`` (a vfork: the agent's memory is not copied) with ``setsid`` and three
file actions (``/dev/null`` as standard input, the write ends of the two pipes as
standard output and error); nothing else is inherited, since every descriptor Python
opens is close-on-exec (PEP 446) and `spawn` makes the agent's inherited ones so once.

``posix_spawn`` has no working-folder action in Python, so the agent's own working folder
is switched to the command's around the call, in the event loop's thread, and only for
an absolute folder (the agent's work folders are: `scitq.cli.agent` resolves them), so
that no relative path of another thread is ever resolved against it; a relative one
goes through ``Popen`` as before. Exec failures (not found, not executable) are raised in
the caller as ``OSError``, as ``Popen`` raises them; an environment the system cannot
pass raises ``ValueError``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_DEVNULL: int | None = None


@dataclass(slots=True)
class Spawned:
    """A started command: its pid and the read ends of its output pipes."""

    pid: int
    stdout: int
    stderr: int
    _closed: bool = False

    def close(self) -> None:
        """Close the read ends (once)."""
        if not self._closed:
            self._closed = True
            for fd in (self.stdout, self.stderr):
                with contextlib.suppress(OSError):
                    os.close(fd)


def spawn(arguments: Sequence[str], env: Mapping[str, str], cwd: Path) -> Spawned:
    """Start ``arguments`` in a new session in ``cwd`` with ``env``; see the module doc."""
    if not cwd.is_absolute():
        return _popen(arguments, env, cwd)
    if any(not name or "=" in name for name in env):  # posix_spawn lets "=C" through
        raise ValueError("illegal environment variable name")
    global _DEVNULL
    if _DEVNULL is None:
        _close_inherited()
        _DEVNULL = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    program = arguments[0]
    if "/" not in program:  # searched in the command's PATH, as Popen does
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        program = found
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    actions = [(os.POSIX_SPAWN_DUP2, _DEVNULL, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
               (os.POSIX_SPAWN_DUP2, err_w, 2)]  # fmt: skip
    here = os.getcwd()
    try:
        os.chdir(cwd)
        try:
            pid = os.posix_spawn(program, list(arguments), env, file_actions=actions, setsid=True)
        finally:
            os.chdir(here)
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    return Spawned(pid, out_r, err_r)


def _close_inherited() -> None:
    """Make the descriptors the agent inherited (beyond 0-2) close-on-exec: a task must
    not get them (Popen's ``close_fds``)."""
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            with contextlib.suppress(OSError):
                if fd > 2 and os.get_inheritable(fd):
                    os.set_inheritable(fd, False)


def _popen(arguments: Sequence[str], env: Mapping[str, str], cwd: Path) -> Spawned:
    process = subprocess.Popen(
        arguments, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=cwd, start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.returncode = 0  # reaped by the caller: Popen must never wait for it
    return Spawned(process.pid, os.dup(process.stdout.fileno()), os.dup(process.stderr.fileno()))
