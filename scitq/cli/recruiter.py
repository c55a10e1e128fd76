"""``scitq recruiter``: rules that deploy workers for a batch while it has work, the
instances they run, their cloud operations, and why the scheduler did (not) recruit.

RECRUITER is an id, or BATCH (rank 1) or BATCH:RANK.
"""

from __future__ import annotations

from typing import Any

import click

from scitq.cli import CliState, pass_state
from scitq.cli.output import (
    Column,
    open_client,
    print_json,
    print_json_array,
    print_rows,
    print_table,
)
from scitq.client import Client
from scitq.db.recruitment import (
    cloud_operation_list,
    instance_list,
    recruiter_decisions,
    recruiter_delete,
    recruiter_find,
    recruiter_list,
    recruiter_set,
    recruiter_update,
)
from scitq.errors import InvalidArgument, NotFound

RECRUITER_COLUMNS: list[Column] = [
    ("ID", lambda r: r["recruiter_id"]), ("BATCH", lambda r: r["batch"]),
    ("RANK", lambda r: r["rank"]), ("PROVIDER", lambda r: r["provider"]),
    ("FLAVOR", lambda r: r["flavor"]), ("REGION", lambda r: r["region"]),
    ("CONC", lambda r: r["concurrency"]), ("PREFETCH", lambda r: r["prefetch"]),
    ("WORKERS", lambda r: f"{r['min_workers']}-{r['max_workers']}"),
    ("TASKS/WORKER", lambda r: r["tasks_per_worker"]),
    ("STARTING", lambda r: r["instances_starting"]), ("ACTIVE", lambda r: r["instances_active"]),
]  # fmt: skip
INSTANCE_COLUMNS: list[Column] = [
    ("ID", lambda i: i["instance_id"]), ("NAME", lambda i: i["name"]),
    ("PROVIDER", lambda i: i["provider"]), ("REF", lambda i: i["provider_ref"]),
    ("FLAVOR", lambda i: i["flavor"]), ("STATUS", lambda i: i["status"]),
    ("BATCH", lambda i: i["batch"]), ("WORKER", lambda i: i["worker_liveness"]),
    ("LAST OPERATION", lambda i: " ".join(
        str(v) for v in (i["last_operation_kind"], i["last_operation_status"]) if v)),
    ("ERROR", lambda i: i["last_operation_error"]), ("CREATED", lambda i: i["created_at"]),
]  # fmt: skip
OPERATION_COLUMNS: list[Column] = [
    ("ID", lambda o: o["operation_id"]), ("KIND", lambda o: o["kind"]),
    ("INSTANCE", lambda o: o["instance_name"]), ("PROVIDER", lambda o: o["provider"]),
    ("STATUS", lambda o: o["status"]), ("PROGRESS", lambda o: f"{o['progress']}%"),
    ("ATTEMPTS", lambda o: o["attempts"]), ("ERROR CLASS", lambda o: o["error_class"]),
    ("ERROR", lambda o: o["error"]), ("UPDATED", lambda o: o["updated_at"]),
]  # fmt: skip

recruiter_argument = click.argument("ref", metavar="RECRUITER")


def find_recruiter(client: Client, ref: str) -> dict[str, Any]:
    """A recruiter by id, BATCH or BATCH:RANK, or NotFound."""
    found: dict[str, Any] | None
    if ref.isdigit():
        found = recruiter_find(client.connection, recruiter_id=int(ref))
    else:
        batch, _, rank = ref.rpartition(":") if ":" in ref else (ref, "", "1")
        if not rank.isdigit():
            raise InvalidArgument(f"invalid recruiter {ref!r}: give an id, BATCH or BATCH:RANK")
        found = recruiter_find(client.connection, batch=batch, rank=int(rank))
    if found is None:
        raise NotFound(f"no recruiter {ref!r}: see `scitq recruiter list`")
    return found


def _fields_option(function: Any) -> Any:
    options = [
        click.option("--flavor", help="Flavor of the instances (provider-specific)."),
        click.option("--image", help="Image of the instances (openstack)."),
        click.option("--region", help="Region of the instances."),
        click.option("-c", "--concurrency", type=click.IntRange(1),
                     help="Tasks run at once by each worker."),
        click.option("-p", "--prefetch", type=click.IntRange(0),
                     help="Tasks each worker claims ahead."),
        click.option("--min-workers", type=click.IntRange(0),
                     help="Workers kept while the batch has unfinished tasks."),
        click.option("--tasks-per-worker", type=click.IntRange(1),
                     help="Runnable tasks that justify one more worker."),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


@click.group()
def recruiter() -> None:
    """Recruiters: deploy workers for a batch while it has runnable tasks.

    The scheduler (`scitq scheduler`) applies them; `scitq recruiter explain` says why it
    did or did not recruit.
    """


@recruiter.command("list")
@click.option("-b", "--batch", help="Only the recruiters of this batch.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def list_recruiters(state: CliState, batch: str | None, as_json: bool) -> None:
    """List recruiters with their instances starting and active.

    Exit codes: 0; 3 database unreachable.
    """
    with open_client(state, read_only=True) as client:
        rows = recruiter_list(client.connection, batch)
    print_rows(rows, RECRUITER_COLUMNS, as_json=as_json)


@recruiter.command("add")
@click.argument("batch")
@click.option("-P", "--provider", required=True, help="local or openstack.")
@click.option("-W", "--max-workers", type=click.IntRange(1), required=True, help="Workers at most.")
@_fields_option
@click.option("--rank", type=click.IntRange(1), default=1, show_default=True,
              help="Several recruiters of a batch apply in rank order.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the recruiter as JSON.")
@pass_state
def add(state: CliState, /, batch: str, provider: str, max_workers: int, rank: int,
        as_json: bool, **fields: Any) -> None:  # fmt: skip
    """Create the recruiter of BATCH (and rank), or replace it.

    Defaults: concurrency 1, prefetch 0, minimum workers 0, one task per worker.

    Exit codes: 0; 2 invalid option.
    """
    values = {key: value for key, value in fields.items() if value is not None}
    with open_client(state) as client:
        row = recruiter_set(client.connection, batch, provider, max_workers, rank=rank, **values)
        shown = recruiter_find(client.connection, recruiter_id=row["id"])
    _print(shown, as_json)


@recruiter.command("set")
@recruiter_argument
@click.option("-P", "--provider", help="local or openstack.")
@click.option("-W", "--max-workers", type=click.IntRange(1), help="Workers at most.")
@_fields_option
@click.option("--json", "as_json", is_flag=True, help="Print the recruiter as JSON.")
@pass_state
def set_recruiter(state: CliState, /, ref: str, as_json: bool, **fields: Any) -> None:
    """Change some fields of a recruiter (an empty --flavor, --image or --region clears it).

    Exit codes: 0; 2 invalid option; 4 unknown recruiter.
    """
    values = {key: value for key, value in fields.items() if value is not None}
    if not values:
        raise click.UsageError("nothing to change: give --max-workers, --concurrency, ...")
    with open_client(state) as client:
        found = find_recruiter(client, ref)
        recruiter_update(client.connection, found["recruiter_id"], **values)
        shown = recruiter_find(client.connection, recruiter_id=found["recruiter_id"])
    _print(shown, as_json)


def _print(row: dict[str, Any] | None, as_json: bool) -> None:
    assert row is not None
    if as_json:
        print_json(row)
        return
    where = " ".join(f"{key} {row[key]}" for key in ("flavor", "image", "region") if row[key])
    click.echo(
        f"recruiter {row['recruiter_id']}: batch {row['batch']} rank {row['rank']}, "
        f"{row['min_workers']} to {row['max_workers']} workers on {row['provider']}"
        f"{' (' + where + ')' if where else ''}, concurrency {row['concurrency']}, prefetch "
        f"{row['prefetch']}, {row['tasks_per_worker']} tasks per worker"
    )


@recruiter.command()
@recruiter_argument
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def delete(state: CliState, ref: str, yes: bool) -> None:
    """Delete a recruiter; its instances are destroyed when idle, like any other.

    Exit codes: 0; 1 not confirmed; 4 unknown recruiter.
    """
    with open_client(state) as client:
        found = find_recruiter(client, ref)
        if not yes:
            click.confirm(f"Delete recruiter {found['recruiter_id']} of batch {found['batch']}?",
                          abort=True)  # fmt: skip
        recruiter_delete(client.connection, found["recruiter_id"])
    click.echo(f"recruiter {found['recruiter_id']} deleted")


@recruiter.command()
@recruiter_argument
@click.option("-n", "--last", "limit", type=click.IntRange(1), default=10, show_default=True,
              help="How many decisions to show.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def explain(state: CliState, ref: str, limit: int, as_json: bool) -> None:
    """Why the scheduler did or did not recruit for this recruiter: its latest decisions.

    Exit codes: 0; 4 unknown recruiter.
    """
    with open_client(state, read_only=True) as client:
        found = find_recruiter(client, ref)
        decisions = recruiter_decisions(client.connection, found["recruiter_id"], limit)
    if as_json:
        print_json({"recruiter": found, "decisions": decisions})
        return
    _print(found, False)
    if not decisions:
        click.echo("no decision yet: is `scitq scheduler` running?")
    for row in reversed(decisions):
        click.echo(f"{row['at'].astimezone():%Y-%m-%d %H:%M:%S} {row['decision']}: {row['reason']}")


@recruiter.command()
@click.option("-a", "--all", "include_deleted", is_flag=True, help="Deleted instances too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def instances(state: CliState, include_deleted: bool, as_json: bool) -> None:
    """List the instances providers run for workers, with their last operation.

    Exit codes: 0; 3 database unreachable.
    """
    with open_client(state, read_only=True) as client:
        rows = instance_list(client.connection, include_deleted)
    print_rows(rows, INSTANCE_COLUMNS, as_json=as_json)


@recruiter.command()
@click.option("-a", "--all", "include_old", is_flag=True, help="Older than a day too.")
@click.option("-n", "--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--log", "show_log", is_flag=True, help="Print each operation's log.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def operations(
    state: CliState, include_old: bool, limit: int, show_log: bool, as_json: bool
) -> None:
    """List cloud operations (deploys, destroys): unfinished and of the last day.

    Exit codes: 0; 3 database unreachable.
    """
    with open_client(state, read_only=True) as client:
        rows = cloud_operation_list(client.connection, include_old, limit)
    if as_json:
        print_json_array(rows)
        return
    print_table(rows, OPERATION_COLUMNS)
    if show_log:
        for row in rows:
            click.echo(f"-- operation {row['operation_id']} ({row['kind']} {row['instance_name']})")
            click.echo(row["log"].rstrip("\n"))
