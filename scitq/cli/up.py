"""``scitq up``: the database, a scheduler, a local agent and the web dashboard in one
command, for a laptop.

The scheduler, the agent and the dashboard are ``python -m scitq scheduler|agent|web``
child processes,
each in its own process group (a terminal's Ctrl-C reaches only ``up``, which then
stops them in order). The database URL reaches them through ``SCITQ_DATABASE_URL``,
never the command line (where ``ps`` would show a password).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import click
import psutil

from scitq.cli import STOP_SIGNALS, CliState, mask_conninfo, pass_state, stop_signals
from scitq.db.connection import connect
from scitq.embedded import conninfo_for
from scitq.errors import InvalidArgument

#: How often `up` checks that its children still run, in seconds.
POLL_SECONDS = 0.2
#: After SIGTERM, how long the children may take to stop before SIGKILL, in seconds.
STOP_TIMEOUT = 25.0
#: Passed to the agent: how long running tasks may finish when `up` stops (the agent
#: then TERMs and KILLs them, within its own 10 s), so it ends inside STOP_TIMEOUT.
AGENT_SHUTDOWN_GRACE = 10.0
#: How long the dashboard may take to listen before `up` announces it anyway, in seconds.
WEB_START_TIMEOUT = 30.0
#: Exit code when a child died on its own.
CHILD_DIED_EXIT_CODE = 1


@dataclass
class Child:
    """One child process of `up` (the leader of its own process group)."""

    role: str
    process: subprocess.Popen[bytes]
    #: Every process ever seen below it (task commands run in sessions of their own).
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def remember_descendants(self) -> None:
        try:
            for proc in psutil.Process(self.process.pid).children(recursive=True):
                self.seen.setdefault(proc.pid, proc)
        except psutil.Error:
            pass

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


def _start(role: str, args: list[str], env: dict[str, str], verbose: bool) -> Child:
    command = [sys.executable, "-m", "scitq", *(["-v"] if verbose else []), role, *args]
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, process_group=0)
    return Child(role, process)


def refuse_taken_port(host: str, port: int) -> None:
    """Refuse, before anything starts, a dashboard port another process listens on.

    Raises:
        InvalidArgument: the port is taken (another `scitq up`, most likely).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidArgument(f"cannot serve the dashboard on {host}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                problem = f"cannot serve the dashboard on {host}:{port}: {exc.strerror}"
                raise InvalidArgument(problem) from None
            raise InvalidArgument(
                f"port {port} of {host} is in use (another `scitq up` or `scitq web`?): "
                "give --web-port PORT, or --no-web"
            ) from None


def wait_listening(host: str, port: int, child: Child, timeout: float = WEB_START_TIMEOUT) -> None:
    """Return once the dashboard accepts connections on ``host:port`` (so that what
    `up` announces is true, and a second `up` finds the port taken), or once its
    process has ended or ``timeout`` has passed (the caller's watch then reports it)."""
    deadline = time.monotonic() + timeout
    while child.process.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=POLL_SECONDS):
                return
        except OSError:
            time.sleep(POLL_SECONDS)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def stop_children(children: list[Child], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM every child's group, wait up to ``timeout``, then SIGKILL what is left.

    Processes that left the groups (task commands run in their own sessions) are
    killed too, so that nothing started by `up` survives it.
    """
    for child in children:
        child.remember_descendants()
        if child.process.poll() is None:
            child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        while child.process.poll() is None and time.monotonic() < deadline:
            child.remember_descendants()
            time.sleep(POLL_SECONDS)
    for child in children:
        child.signal_group(signal.SIGKILL)  # stragglers in the group, if any
        if child.process.poll() is None:
            child.process.kill()
        child.process.wait()
        leftovers = [proc for proc in child.seen.values() if proc.is_running()]
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=5)


def _wait(children: list[Child], stop: threading.Event) -> Child | None:
    """Block until ``stop`` is set (None) or a child ends (that child)."""
    while not stop.wait(POLL_SECONDS):
        for child in children:
            if child.process.poll() is not None:
                return child
    return None


def _announce(
    state: CliState,
    conninfo: str,
    children: list[Child],
    concurrency: int,
    batches: tuple[str, ...],
    with_web: bool,
    port: int,
) -> None:
    """Say what runs where, and how to use it."""
    database = state.settings().database
    web = state.settings().web
    if database.is_embedded:
        where = f"embedded PostgreSQL in {database.data_dir} ({mask_conninfo(conninfo)})"
    else:
        where = mask_conninfo(conninfo)
    serving = ", ".join(batches) if batches else "all batches"
    flag = " (with the same --database-url)" if state.database_url is not None else ""
    click.echo(f"database: {where}")
    click.echo(f"scheduler: pid {children[0].process.pid}")
    click.echo(
        f"agent: pid {children[1].process.pid}, concurrency {concurrency}, serving {serving}"
    )
    if with_web:
        click.echo(
            f"web: http://{web.host}:{port}/ (pid {children[2].process.pid}); "
            f"add a user with: scitq web create-user NAME --role admin{flag}"
        )
    click.echo(f"submit a first task{flag}: scitq launch --batch demo -- echo hello")
    click.echo("then see it with: scitq task list")
    click.echo("press Ctrl-C to stop")


@click.command()
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks the local agent runs at once [default: the number of CPUs].",
)
@click.option(
    "-b",
    "--batch",
    "batches",
    multiple=True,
    help="Batch the local agent serves (repeat for several; default: all).",
)
@click.option(
    "--web/--no-web",
    "with_web",
    default=True,
    show_default=True,
    help="Serve the web dashboard too (on the [web] host and port of the settings).",
)
@click.option(
    "--web-port", type=click.IntRange(1, 65535), default=None, help="The dashboard's port."
)
@pass_state
def up(
    state: CliState,
    concurrency: int | None,
    batches: tuple[str, ...],
    with_web: bool,
    web_port: int | None,
) -> None:
    """Run the database, a scheduler, a local agent and the web dashboard until Ctrl-C.

    The embedded database is started (and migrated) unless a database URL is
    configured. On Ctrl-C or SIGTERM the scheduler, the agent and the dashboard are
    stopped; the embedded database keeps running (`scitq db stop` stops it).
    """
    database = state.settings().database
    port = web_port or state.settings().web.port
    if with_web:
        refuse_taken_port(state.settings().web.host, port)
    conninfo = conninfo_for(database)
    with connect(conninfo):  # a clear one-line error now rather than in the children
        pass
    concurrency = concurrency or os.cpu_count() or 1

    env = dict(os.environ)
    if conninfo:  # "" means libpq's PG* variables, which the children inherit
        env["SCITQ_DATABASE_URL"] = conninfo
    env.setdefault("PYTHONUNBUFFERED", "1")
    # the agent chooses a free work dir under the data dir (and so a worker of its own);
    # with no --batch it serves every batch, whatever an earlier worker of that work dir did
    agent_args = ["--concurrency", str(concurrency), "--shutdown-grace", str(AGENT_SHUTDOWN_GRACE)]
    for batch in batches:
        agent_args += ["--batch", batch]
    if not batches:
        agent_args.append("--all-batches")

    children: list[Child] = []
    died: Child | None = None
    with stop_signals() as stop:
        try:
            children.append(_start("scheduler", [], env, state.verbose))
            children.append(_start("agent", agent_args, env, state.verbose))
            if with_web:
                web_args = ["--port", str(port)]
                children.append(_start("web", web_args, env, state.verbose))
                wait_listening(state.settings().web.host, port, children[-1])
            _announce(state, conninfo, children, concurrency, batches, with_web, port)
            sys.stdout.flush()
            died = _wait(children, stop.event)
        finally:
            # a second Ctrl-C while stopping is ignored: stopping is bounded anyway
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            if died is not None:
                code = died.process.returncode
                others = [child.role for child in children if child is not died]
                click.echo(
                    f"scitq: error: the {died.role} (pid {died.process.pid}) {_describe(code)}; "
                    f"stopping the {' and the '.join(others)}",
                    err=True,
                )
            stop_children(children)
    if died is not None:
        raise SystemExit(CHILD_DIED_EXIT_CODE)
    reason = stop.received[0] if stop.received else "stopped"
    roles = [child.role for child in children]
    stopped = ", the ".join(roles[:-1]) + " and the " + roles[-1]
    click.echo(f"stopped the {stopped} ({reason})")
    if database.is_embedded:
        click.echo(
            f"the embedded database in {database.data_dir} is still running; "
            "`scitq db stop` stops it"
        )
