"""``scitq agent``: serve as a worker on this machine."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import click

from scitq.cli import CliState, pass_state
from scitq.cli.options import INT_MAX
from scitq.config import AgentSettings
from scitq.embedded import conninfo_for
from scitq.errors import InvalidArgument

#: The largest concurrency or prefetch (PostgreSQL integer columns).


def _positive(name: str, value: float | None, *, zero: bool = False) -> None:
    if value is None:
        return
    # not (value >= 0): also refuses nan, which fails every comparison
    if not value >= 0 or (value == 0 and not zero) or value == float("inf"):
        bound = "0 or more" if zero else "more than 0"
        raise InvalidArgument(f"--{name} must be {bound} and finite, not {value}")
    if isinstance(value, int) and value > INT_MAX:
        raise InvalidArgument(f"--{name} must be at most {INT_MAX}, not {value}")


@click.command()
@click.option(
    "-b",
    "--batch",
    "batches",
    multiple=True,
    help="Batch to serve (repeat for several; default: the worker's batches, or all).",
)
@click.option("-n", "--name", default=None, help="Worker name (default: the host name).")
@click.option(
    "-c",
    "--concurrency",
    type=int,
    default=None,
    help="Tasks run at once (default: the worker's, or 1).",
)
@click.option(
    "-p", "--prefetch", type=int, default=None, help="Tasks claimed ahead of a free run slot."
)
@click.option(
    "-w",
    "--work-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Scratch directory for executions.",
)
@click.option(
    "--lease",
    "lease_seconds",
    type=float,
    default=None,
    help="Seconds without heartbeat before an execution is lost.",
)
@click.option(
    "--heartbeat",
    "heartbeat_seconds",
    type=float,
    default=None,
    help="Seconds between heartbeats while tasks run.",
)
@click.option(
    "--poll-min",
    "poll_min_seconds",
    type=float,
    default=None,
    help="First idle polling interval, in seconds.",
)
@click.option(
    "--poll-max",
    "poll_max_seconds",
    type=float,
    default=None,
    help="Longest idle polling interval, in seconds.",
)
@click.option(
    "--no-listen", is_flag=True, help="Poll only (e.g. behind PgBouncer transaction pooling)."
)
@click.option(
    "--shutdown-grace",
    "shutdown_grace_seconds",
    type=float,
    default=None,
    help="On SIGTERM, seconds running tasks may finish before they are killed.",
)
@click.option(
    "--drain",
    "exit_when_idle",
    is_flag=True,
    help="Exit once no task is left to claim and nothing runs.",
)
@click.option(
    "--container-runtime", default=None, help="docker or podman (default: whichever is installed)."
)
@pass_state
def agent(state: CliState, /, **options: object) -> None:  # fmt: skip
    """Run tasks of the database's queue on this machine."""
    listen = not options.pop("no_listen")
    given = {key: value for key, value in options.items() if value not in (None, ())}
    for name in ("concurrency", "prefetch"):
        _positive(name, given.get(name), zero=True)  # type: ignore[arg-type]
    for name in ("lease_seconds", "heartbeat_seconds", "poll_min_seconds", "poll_max_seconds"):
        _positive(name.removesuffix("_seconds").replace("_", "-"), given.get(name))  # type: ignore[arg-type]
    _positive("shutdown-grace", given.get("shutdown_grace_seconds"), zero=True)  # type: ignore[arg-type]
    base = AgentSettings()
    poll_min = float(given.get("poll_min_seconds", base.poll_min_seconds))  # type: ignore[arg-type]
    poll_max = float(given.get("poll_max_seconds", base.poll_max_seconds))  # type: ignore[arg-type]
    if poll_min > poll_max:
        raise InvalidArgument(f"--poll-min ({poll_min}) must not exceed --poll-max ({poll_max})")
    if "batches" in given:
        given["batches"] = tuple(given["batches"])  # type: ignore[arg-type]
    settings = dataclasses.replace(AgentSettings(), listen=listen, **given)  # type: ignore[arg-type]
    conninfo = conninfo_for(state.settings().database)
    transfer = state.settings().transfer

    from scitq.agent.agent import Agent  # asyncio machinery only for this command

    async def serve() -> None:
        runner = Agent(settings, conninfo, transfer)
        runner.install_signal_handlers()
        await runner.run()

    asyncio.run(serve())
