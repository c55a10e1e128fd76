"""``scitq worker``: list workers, change their configuration, pause, resume, delete."""

from __future__ import annotations

from typing import Any

import click

from scitq.cli import CliState, pass_state
from scitq.cli.options import INT_MAX, output_options, within
from scitq.cli.output import (
    Column,
    open_client,
    print_json,
    print_json_array,
    print_rows,
)
from scitq.client import Client, as_dict
from scitq.db.worker import worker_delete, worker_find, worker_list, worker_update
from scitq.errors import NotFound
from scitq.states import TaskStatus

WORKER_COLUMNS: list[Column] = [
    ("ID", lambda w: w["worker_id"]), ("NAME", lambda w: w["name"]),
    ("HOST", lambda w: w["hostname"]),
    ("BATCHES", lambda w: ", ".join(w["batches"]) or "(all)"),
    ("CONC", lambda w: w["concurrency"]), ("PREFETCH", lambda w: w["prefetch"]),
    ("STATE", lambda w: w["liveness"]),
    ("FLAGS", lambda w: " ".join(_flags(w))),
    ("RUNNING", lambda w: w[TaskStatus.RUNNING]),
    ("ASSIGNED", lambda w: w[TaskStatus.ASSIGNED]),
    ("HEARTBEAT", lambda w: w["last_heartbeat_at"]),
]  # fmt: skip
WORKER_FIELDS = ["worker_id", "name", "hostname", "batches", "concurrency", "prefetch",
                 "is_paused", "is_draining", "is_permanent", "liveness", "last_heartbeat_at",
                 TaskStatus.RUNNING, TaskStatus.ASSIGNED, "created_at"]  # fmt: skip

#: The worker flags shown as words (``is_paused`` -> paused).
FLAGS = ("is_paused", "is_draining")

worker_argument = click.argument("ref", metavar="WORKER")


def _find(client: Client, ref: str) -> dict[str, Any]:
    found = worker_find(client.connection, ref)
    if found is None:
        raise NotFound(f"no worker named {ref!r} (or of that id): see `scitq worker list`")
    return found


def _flags(row: dict[str, Any]) -> list[str]:
    """What is set of a worker's paused and draining flags, as words."""
    return [flag.removeprefix("is_") for flag in FLAGS if row[flag]]


def _describe(row: dict[str, Any]) -> str:
    batches = ", ".join(row["batches"]) or "all batches"
    flags = _flags(row)
    return (
        f"worker {row['name']} (id {row['id']}): concurrency {row['concurrency']}, prefetch "
        f"{row['prefetch']}, serves {batches}{''.join(', ' + flag for flag in flags)}"
    )


@click.group()
def worker() -> None:
    """Manage workers: list, set, pause, resume, delete (WORKER is a name or an id)."""


@worker.command("list")
@output_options
@pass_state
def list_workers(state: CliState, as_json: bool, as_csv: bool) -> None:
    """List workers with their configuration, liveness and load.

    STATE is online (heartbeats arrive), offline (silent for longer than its lease) or
    stopped (shut down cleanly).

    Exit codes: 0; 3 database unreachable.
    """
    with open_client(state, read_only=True) as client:
        rows = worker_list(client.connection)
    if as_json:
        rows = [{field: row[field] for field in WORKER_FIELDS} for row in rows]
    print_rows(rows, WORKER_COLUMNS, as_json=as_json, as_csv=as_csv, fields=WORKER_FIELDS)


@worker.command("set")
@worker_argument
@click.option("-c", "--concurrency", type=click.IntRange(0), callback=within(0, INT_MAX),
              help="Tasks run at once.")  # fmt: skip
@click.option("-p", "--prefetch", type=click.IntRange(0), callback=within(0, INT_MAX),
              help="Tasks claimed ahead.")  # fmt: skip
@click.option("-b", "--batch", "batches", multiple=True, help="Serve this batch (repeatable).")
@click.option("--all-batches", is_flag=True, help="Serve every batch.")
@click.option("--permanent/--not-permanent", default=None, help="Never destroyed when idle.")
@click.option("--drain/--no-drain", default=None, help="Finish current tasks, claim no more.")
@click.option("--json", "as_json", is_flag=True, help="Print the worker as JSON.")
@pass_state
def set_worker(
    state: CliState,
    ref: str,
    concurrency: int | None,
    prefetch: int | None,
    batches: tuple[str, ...],
    all_batches: bool,
    permanent: bool | None,
    drain: bool | None,
    as_json: bool,
) -> None:
    """Change a worker's configuration; its agent applies it at its next heartbeat.

    Options not given keep their value. --batch replaces the list of batches served.

    Exit codes: 0; 2 invalid option; 4 unknown worker.
    """
    if batches and all_batches:
        raise click.UsageError("give --batch or --all-batches, not both")
    changes = (concurrency, prefetch, permanent, drain)
    if not batches and not all_batches and all(value is None for value in changes):
        raise click.UsageError("nothing to change: give --concurrency, --prefetch, --batch, ...")
    with open_client(state) as client:
        found = _find(client, ref)
        row = worker_update(
            client.connection,
            found["id"],
            concurrency=concurrency,
            prefetch=prefetch,
            batches=[] if all_batches else (batches or None),
            is_permanent=permanent,
            is_draining=drain,
        )
    _print_worker(row, as_json)


def _print_worker(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        keys = ("id", "name", "batches", "concurrency", "prefetch", "is_paused", "is_draining",
                "is_permanent", "config_version")  # fmt: skip
        print_json({key: row[key] for key in keys})
    else:
        click.echo(_describe(row))


def _pausing_command(name: str, paused: bool, summary: str) -> None:
    """``scitq worker pause`` (``paused``) or ``resume``: set the flag, print the worker."""

    @worker.command(name, help=f"{summary}\n\nExit codes: 0; 4 unknown worker.")
    @worker_argument
    @pass_state
    def command(state: CliState, ref: str) -> None:
        with open_client(state) as client:
            row = worker_update(client.connection, _find(client, ref)["id"], is_paused=paused)
        _print_worker(row, as_json=False)


_pausing_command("pause", True, "Stop a worker from claiming tasks; its running tasks go on.")
_pausing_command("resume", False, "Let a paused worker claim tasks again.")


@worker.command()
@worker_argument
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def delete(state: CliState, ref: str, yes: bool) -> None:
    """Delete a worker row; the tasks it holds are retried or failed.

    Its history is kept (executions keep the worker's name). The agent, if it still
    runs, is refused from then on. Asks for confirmation unless --yes.

    Exit codes: 0; 1 not confirmed; 4 unknown worker.
    """
    with open_client(state) as client:
        found = _find(client, ref)
        if not yes:
            click.confirm(f"Delete worker {found['name']} (id {found['id']})?", abort=True)
        worker_delete(client.connection, found["id"])
    click.echo(f"worker {found['name']} deleted")


@worker.command()
@click.option("-N", "--number", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Workers to deploy.")  # fmt: skip
@click.option("-b", "--batch", required=True, help="The batch they serve.")
@click.option("-P", "--provider", required=True, help="local or openstack.")
@click.option("-f", "--flavor", help="Flavor of the instances (provider-specific).")
@click.option("-r", "--region", help="Region of the instances.")
@click.option("--image", help="Image of the instances (openstack).")
@click.option("-c", "--concurrency", type=click.IntRange(1), default=1, show_default=True,
              help="Tasks run at once by each worker.")  # fmt: skip
@click.option("-p", "--prefetch", type=click.IntRange(0), default=0, show_default=True,
              help="Tasks each worker claims ahead.")  # fmt: skip
@click.option("--permanent", is_flag=True, help="Never destroyed when idle.")
@click.option("--json", "as_json", is_flag=True, help="Print the instances as JSON.")
@pass_state
def deploy(
    state: CliState,
    number: int,
    batch: str,
    provider: str,
    flavor: str | None,
    region: str | None,
    image: str | None,
    concurrency: int,
    prefetch: int,
    permanent: bool,
    as_json: bool,
) -> None:
    """Deploy NUMBER workers for a batch now (v1's worker deploy).

    The active scheduler creates the instances; they are destroyed once idle, like
    recruited ones, unless --permanent. Follow them with `scitq recruiter operations`.

    Exit codes: 0; 2 invalid option.
    """
    with open_client(state) as client:
        deployed = client.deploy(
            number, batch=batch, provider=provider, flavor=flavor, region=region, image=image,
            concurrency=concurrency, prefetch=prefetch, permanent=permanent,
        )  # fmt: skip
    if as_json:
        print_json_array(as_dict(worker) for worker in deployed)
        return
    names = ", ".join(worker.name for worker in deployed)
    click.echo(f"{len(deployed)} worker{'s' if len(deployed) > 1 else ''} requested on "
               f"{provider} for batch {batch}: {names}")  # fmt: skip
    click.echo("the active scheduler deploys them: see `scitq recruiter operations`")
