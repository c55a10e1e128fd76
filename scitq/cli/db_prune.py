"""``scitq db prune``: create partitions ahead and drop the ones the retention lets go."""

from __future__ import annotations

import click

from scitq.cli import CliState, pass_state
from scitq.cli.output import format_bytes, print_rows
from scitq.db.batch import batch_count_compact
from scitq.db.connection import connect
from scitq.db.partition import partition_ensure, partition_list, partition_prune
from scitq.embedded import conninfo_for
from scitq.errors import InvalidArgument

DAYS = click.FloatRange(min=0)


@click.command()
@click.option(
    "--succeeded-days",
    type=DAYS,
    metavar="DAYS",
    help="Keep the output of succeeded attempts this long "
    "(default: output_retention_days of [scheduler]).",
)
@click.option(
    "--failed-days",
    type=DAYS,
    metavar="DAYS",
    help="Keep the output of the other attempts this long (default: failed_output_retention_days).",
)
@click.option(
    "--event-days",
    type=DAYS,
    metavar="DAYS",
    help="Keep the task event log this long (default: event_retention_days).",
)
@click.option(
    "--keep-forever",
    "forever",
    multiple=True,
    type=click.Choice(["output", "failed-output", "events"]),
    help="Keep these forever whatever the settings (repeatable): output (of every attempt), "
    "failed-output (of the attempts that did not succeed), events.",
)
@click.option("--list", "list_only", is_flag=True, help="Only list the partitions.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def prune(
    state: CliState,
    succeeded_days: float | None,
    failed_days: float | None,
    event_days: float | None,
    forever: tuple[str, ...],
    list_only: bool,
    as_json: bool,
) -> None:
    """Drop old execution output and events by whole partitions (never a DELETE).

    Creates the partitions writes will need first, as the scheduler's partitions duty
    does. Tasks and executions are always kept. The scheduler runs the same retention
    every retention_seconds when a period is configured (docs/operations.md).
    """
    settings = state.settings()
    scheduler = settings.scheduler
    given = {"output": succeeded_days, "failed-output": failed_days, "events": event_days}
    configured = {
        "output": scheduler.output_retention_days,
        "failed-output": scheduler.failed_output_retention_days,
        "events": scheduler.event_retention_days,
    }
    periods = {key: configured[key] if value is None else value for key, value in given.items()}
    for key in forever:
        if given[key] is not None:
            raise InvalidArgument(f"--keep-forever {key} contradicts the period given for it")
        periods[key] = None
    database = settings.database
    with connect(conninfo_for(database), application_name=database.application_name) as conn:
        if list_only:
            listed = partition_list(conn)
            print_rows(listed, LIST_COLUMNS, as_json=as_json)
            return
        with conn.transaction():
            created = partition_ensure(
                conn, scheduler.output_partition_executions, scheduler.partitions_ahead,
                scheduler.event_partition_days, scheduler.partitions_ahead,
            )  # fmt: skip
        with conn.transaction():
            acted = partition_prune(
                conn, periods["output"], periods["failed-output"], periods["events"]
            )
        with conn.transaction():
            batch_count_compact(conn)
    done = [{"partition": r["partition"], "action": "created", "rows": r["moved_rows"]}
            for r in created] + [dict(r) for r in acted]  # fmt: skip
    if as_json:
        print_rows(done, ACTION_COLUMNS, as_json=True)
    elif not done:
        click.echo("nothing to create or drop (" + _periods(periods) + ")")
    else:
        print_rows(done, ACTION_COLUMNS, as_json=False)


def _periods(periods: dict[str, float | None]) -> str:
    return ", ".join(
        f"{name} {'forever' if days is None else f'{days:g} days'}"
        for name, days in periods.items()
    )


ACTION_COLUMNS = (
    ("partition", lambda r: r["partition"]),
    ("action", lambda r: r["action"]),
    ("rows", lambda r: r["rows"]),
)
LIST_COLUMNS = (
    ("table", lambda r: r["parent"]),
    ("partition", lambda r: r["partition"]),
    ("bounds", lambda r: r["bounds"]),
    ("rows (est.)", lambda r: r["estimated_rows"]),
    ("size", lambda r: format_bytes(r["bytes"])),
)
