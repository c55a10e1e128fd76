"""``scitq agent``: serve as a worker on this machine."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from pathlib import Path

import click
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from scitq.agent.identity import claim_identity
from scitq.cli import CliState, mask_conninfo, pass_state
from scitq.cli.options import BYTE_SIZE, INT_MAX
from scitq.config import AgentSettings
from scitq.config.secrets import LIBPQ_PASSWORD_VARIABLE, scrub_credentials
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
@click.option(
    "--all-batches",
    is_flag=True,
    help="Serve every batch, whatever batches the worker row held (what `scitq up` does).",
)
@click.option(
    "-n",
    "--name",
    default=None,
    help="Worker name (default: the host name and a suffix kept in the work dir).",
)
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
    type=click.Path(path_type=Path, resolve_path=True),  # absolute: scitq.agent.spawn
    default=None,
    help="Scratch directory for executions, one agent at a time "
    "[default: the first free one of DATA_DIR/work, DATA_DIR/work-2...].",
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
@click.option(
    "--pull/--no-pull",
    "pull_images",
    default=None,
    help="Pull a task's missing container image on first use (default), or never.",
)
@click.option(
    "--registry-auth-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Registry credentials for pulls, as `podman login --authfile FILE` "
    "writes them (docker: its config.json).",
)
@click.option(
    "--min-free-disk",
    "min_free_disk_bytes",
    type=BYTE_SIZE,
    default=None,
    help="Claim nothing while the work dir's disk has less free (0: no floor) [default: 256M].",
)
@click.option(
    "--keep-failed/--no-keep-failed",
    "keep_failed_work_dirs",
    default=None,
    help="Keep the work dirs of failed executions (default), or remove them at once.",
)
@click.option(
    "--keep-failed-hours",
    type=float,
    default=None,
    help="Remove kept failed work dirs after this many hours [default: 24].",
)
@click.option(
    "--keep-failed-min-free",
    "keep_failed_min_free_bytes",
    type=BYTE_SIZE,
    default=None,
    help="Remove the oldest kept failed work dirs while less is free [default: the floor].",
)
@click.option(
    "--cache-max",
    "resource_cache_max_bytes",
    type=BYTE_SIZE,
    default=None,
    help="Evict least recently used resources past this cache size (0: no cap, the default).",
)
@click.option(
    "--metrics-interval",
    "metrics_seconds",
    type=float,
    default=None,
    help="Seconds between host metrics samples sent with heartbeats (0: none) [default: 30].",
)
@pass_state
def agent(state: CliState, /, **options: object) -> None:  # fmt: skip
    """Run tasks of the database's queue on this machine.

    Every agent process is its own worker: without --name the worker is named after the
    host and a suffix kept in its work dir (a restarted agent resumes its worker, a
    second agent on the machine gets another work dir and another worker). A name or
    work dir another live agent holds is refused, naming that agent.

    The first Ctrl-C (or SIGTERM) stops claiming and lets running tasks finish within
    --shutdown-grace seconds, then hands back what is left; a second one kills them.
    """
    listen = not options.pop("no_listen")
    if options.pop("all_batches"):
        if options["batches"]:
            raise InvalidArgument("--all-batches and --batch exclude each other")
        options["batches"] = ()
        all_batches = True
    else:
        all_batches = False
    given = {key: value for key, value in options.items() if value not in (None, ())}
    if all_batches:
        given["batches"] = ()
    for name in ("concurrency", "prefetch"):
        _positive(name, given.get(name), zero=True)  # type: ignore[arg-type]
    for name in ("lease_seconds", "heartbeat_seconds", "poll_min_seconds", "poll_max_seconds"):
        _positive(name.removesuffix("_seconds").replace("_", "-"), given.get(name))  # type: ignore[arg-type]
    _positive("shutdown-grace", given.get("shutdown_grace_seconds"), zero=True)  # type: ignore[arg-type]
    _positive("keep-failed-hours", given.get("keep_failed_hours"), zero=True)  # type: ignore[arg-type]
    _positive("metrics-interval", given.get("metrics_seconds"), zero=True)  # type: ignore[arg-type]
    for name in ("min_free_disk_bytes", "resource_cache_max_bytes"):
        if given.get(name) == 0:
            given[name] = None  # 0: no floor, no cap
    base = AgentSettings()
    poll_min = float(given.get("poll_min_seconds", base.poll_min_seconds))  # type: ignore[arg-type]
    poll_max = float(given.get("poll_max_seconds", base.poll_max_seconds))  # type: ignore[arg-type]
    if poll_min > poll_max:
        raise InvalidArgument(f"--poll-min ({poll_min}) must not exceed --poll-max ({poll_max})")
    if "batches" in given:
        given["batches"] = tuple(given["batches"])  # type: ignore[arg-type]
    database = state.settings().database
    identity = claim_identity(
        database.data_dir,
        name=given.pop("name", None),  # type: ignore[arg-type]
        work_dir=given.pop("work_dir", None),  # type: ignore[arg-type]
        hostname=socket.gethostname(),
    )
    settings = dataclasses.replace(
        AgentSettings(), listen=listen, name=identity.name, work_dir=identity.work_dir,
        **given,  # type: ignore[arg-type]
    )  # fmt: skip
    conninfo = conninfo_for(database)
    transfer = state.settings().transfer
    # no credential stays in the environment its tasks could read (/proc/$PPID/environ);
    # libpq's PGPASSWORD goes on in memory only, for reconnections
    password = scrub_credentials().get(LIBPQ_PASSWORD_VARIABLE)
    if password is not None and "password" not in conninfo_to_dict(conninfo):
        conninfo = make_conninfo(conninfo, password=password)

    from scitq.agent.agent import Agent  # asyncio machinery only for this command

    _log_task_ends(state.verbose)

    def announce(worker: dict[str, object]) -> None:
        batches = worker["batches"]
        serving = f"batches {', '.join(batches)}" if batches else "all batches"  # type: ignore[arg-type]
        where = f" (embedded in {database.data_dir})" if database.is_embedded else ""
        click.echo(
            f"agent: worker {worker['name']} (id {worker['id']}) serving {serving}, "
            f"{worker['concurrency']} slots + {worker['prefetch']} prefetched; "
            f"database {mask_conninfo(conninfo)}{where}; work dir {settings.work_dir}"
        )
        click.echo(
            "Ctrl-C stops claiming and lets running tasks finish "
            f"(up to {settings.shutdown_grace_seconds:g} s); a second Ctrl-C kills them"
        )

    async def serve() -> None:
        runner = Agent(settings, conninfo, transfer, announce=announce)
        runner.install_signal_handlers()
        await runner.run()

    try:
        asyncio.run(serve())
    finally:
        identity.release()


def _log_task_ends(verbose: bool) -> None:
    """Without --verbose, the agent's INFO lines (one per finished task) show all the same."""
    if verbose:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    agent_logger = logging.getLogger("scitq.agent")
    agent_logger.setLevel(logging.INFO)
    agent_logger.addHandler(handler)
    agent_logger.propagate = False
