"""The ``scitq`` command line: a thin shell that parses, calls the library and prints.

Settings come from `scitq.config.load_settings` (read when a command first needs them,
so ``--help`` works even with a broken configuration); ``--database-url`` overrides
them. Subcommand groups live in their own modules (``scitq.cli.<group>``) and are
imported only when used.

Every `ScitqError` ends the process with one line on stderr, ``scitq: error: <message>``,
and the error's exit code; ``--verbose`` adds the full message when it has details.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import click

from scitq import __version__
from scitq.errors import ScitqError

if TYPE_CHECKING:  # imported when used: `scitq --help` or `launch` need not pay for them
    from rich.console import Console

    from scitq.config import Settings

#: Subcommand groups: name -> (module, attribute), imported on first use.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "db": ("scitq.cli.db", "db"),
    "agent": ("scitq.cli.agent", "agent"),
    "launch": ("scitq.cli.launch", "launch"),
    "task": ("scitq.cli.task_edit", "task"),
    "batch": ("scitq.cli.batch", "batch"),
    "worker": ("scitq.cli.worker", "worker"),
    "scheduler": ("scitq.cli.scheduler", "scheduler"),
    "recruiter": ("scitq.cli.recruiter", "recruiter"),
    "up": ("scitq.cli.up", "up"),
    "web": ("scitq.cli.web", "web"),
    "fetch": ("scitq.cli.fetch", "fetch"),
    "completion": ("scitq.cli.completion", "completion"),
}
#: The first line of each group's help, for ``scitq --help`` without importing every
#: group (a second); tests/cli/test_startup.py checks that they match.
SHORT_HELP: dict[str, str] = {
    "agent": "Run tasks of the database's queue on this machine.",
    "batch": "Follow and act on batches: list, show, pause, resume, retry-failed, delete, wait.",
    "completion": "Print the completion script for SHELL (bash, zsh or fish).",
    "db": "Manage the database: upgrade, status, serve, stop, create-role, prune.",
    "fetch": "Copy, list and sync data (s3://, ftp://, http(s)://, file:// or local paths).",
    "launch": "Submit a task: the command after the options (or after --), quoting preserved.",
    "recruiter": "Recruiters: deploy workers for a batch while it has runnable tasks.",
    "scheduler": "Run the scheduler: lease expiry, timeouts, worker liveness, retention, "
    "recruitment.",
    "task": "Inspect and act on tasks: list, show, log, explain, update, rerun, retry, delete.",
    "up": "Run the database, a scheduler, a local agent and the web dashboard until Ctrl-C.",
    "web": "Serve the web dashboard until Ctrl-C (or manage its users).",
    "worker": "Manage workers: list, set, pause, resume, delete (WORKER is a name or an id).",
}

#: What replaces passwords in connection strings that are printed.
MASK = "***"
#: Messages longer than this many lines are cut to their first line unless --verbose.
_MAX_ERROR_LINES = 2


@dataclass
class CliState:
    """What the top-level options leave for subcommands (``ctx.obj``).

    Attributes:
        database_url: the ``--database-url`` flag, or None when not given.
        verbose: ``--verbose`` was given.
    """

    database_url: str | None = None
    verbose: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        """The settings, loaded on first use, with the command-line overrides applied."""
        if self._settings is None:
            from scitq.config import load_settings

            settings = load_settings(lazy=True)  # a command reads the sections it uses
            if self.database_url is not None:
                settings = settings.with_database_url(self.database_url)
            self._settings = settings
        return self._settings


pass_state = click.make_pass_decorator(CliState, ensure=True)


def console() -> Console:
    """A rich console on the current stdout (created per call: tests swap stdout)."""
    from rich.console import Console

    return Console(highlight=False)


def one_line(message: str) -> str:
    """A message as one line: short multi-line messages joined, long ones cut."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    if len(lines) <= _MAX_ERROR_LINES:
        return " ".join(lines)
    return f"{lines[0].rstrip(':')} (run with --verbose for details)"


def mask_conninfo(conninfo: str) -> str:
    """The connection string or URI with any password replaced by ``***``."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    if conninfo == "":
        return "libpq defaults (PG* environment variables)"
    if re.match(r"^postgres(ql)?://", conninfo):
        parts = urlsplit(conninfo)
        netloc = parts.netloc
        userinfo, at, hosts = netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hosts}"
        query = [
            (key, MASK if key == "password" else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*/")))
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<invalid connection string>"
    if "password" in params:
        params["password"] = MASK
    return make_conninfo("", **params)


@dataclass
class StopRequest:
    """The stop signals a serving command received (see `stop_signals`)."""

    event: threading.Event = field(default_factory=threading.Event)
    #: names of the signals received, first first
    received: list[str] = field(default_factory=list)


#: The signals that stop a serving command (Ctrl-C, kill, a closed terminal).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def stop_signals() -> Iterator[StopRequest]:
    """Catch the stop signals while the block runs; the previous handlers come back after."""
    request = StopRequest()

    def handler(signum: int, _frame: FrameType | None) -> None:
        request.received.append(signal.Signals(signum).name)
        request.event.set()

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield request
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def as_scitq_error(exc: BaseException) -> ScitqError | None:
    """The scitq error for an exception a command let through, or None if it is a bug.

    Library code translates psycopg errors itself; this also catches those that came
    back wrapped by SQLAlchemy (``.orig``) through Alembic.
    """
    if isinstance(exc, ScitqError):
        return exc
    psycopg = sys.modules.get("psycopg")  # not imported: the error cannot be one of its
    if psycopg is None:
        return None
    from scitq.db.connection import translate_error

    if isinstance(exc, psycopg.Error):
        return translate_error(exc)
    orig = getattr(exc, "orig", None)
    if isinstance(orig, psycopg.Error):
        return translate_error(orig)
    return None


def fail(ctx: click.Context, error: ScitqError) -> NoReturn:
    """Print ``scitq: error: <message>`` on stderr and exit with the error's code."""
    message = str(error)
    summary = one_line(message)
    click.echo(f"scitq: error: {summary}", err=True)
    state = ctx.find_object(CliState)
    if state is not None and state.verbose and summary != message.strip():
        click.echo(message, err=True)
    ctx.exit(error.exit_code)


class ScitqGroup(click.Group):
    """The top-level group: lazy subcommands and one-line errors for every command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SUBCOMMANDS:
            module_name, attribute = SUBCOMMANDS[cmd_name]
            command = getattr(importlib.import_module(module_name), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help`` from `SHORT_HELP`, importing no group."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [
            (name, click.Command(name, help=SHORT_HELP.get(name, "")).get_short_help_str(limit))
            for name in names
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Like click's, with the close matches of an unknown command name."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib  # only on a typo: start-up

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            error = as_scitq_error(exc)
            if error is None:  # click's own exits and usage errors, or a bug
                raise
            fail(ctx, error)


@click.group(name="scitq", cls=ScitqGroup)
@click.option(
    "--database-url",
    metavar="URL",
    default=None,
    help="PostgreSQL connection URI or conninfo string; overrides SCITQ_DATABASE_URL and "
    "the configuration file (default: the embedded server).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log progress and show full error details.")
@click.version_option(__version__, prog_name="scitq", message="%(prog)s %(version)s")
@click.pass_context
def scitq(ctx: click.Context, database_url: str | None, verbose: bool) -> None:
    """scitq: a distributed scientific task queue coordinated by PostgreSQL."""
    ctx.obj = CliState(database_url=database_url, verbose=verbose)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Console-script entry point (``scitq``)."""
    scitq.main(prog_name="scitq")
