"""Output shared by the task, batch, worker and launch groups.

Rich tables for people, ``--json`` and ``--csv`` for scripts, and the `Client` each
command opens from the CLI settings.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import click

from scitq.cli import CliState, console
from scitq.client import Client
from scitq.states import ExecutionStatus, TaskStatus, WorkerLiveness

if TYPE_CHECKING:  # rich costs 40 ms to import: only commands that draw tables pay for it
    from rich.text import Text

#: (header, value of a row) for rich tables.
Column = tuple[str, Callable[[Any], Any]]

#: Colours of status words in tables; a status not listed is shown plain.
STATUS_STYLES: dict[str, str] = {
    TaskStatus.SUCCEEDED: "green", TaskStatus.FAILED: "red", TaskStatus.CANCELED: "magenta",
    TaskStatus.RUNNING: "cyan", TaskStatus.ASSIGNED: "blue", TaskStatus.PENDING: "yellow",
    TaskStatus.WAITING: "dim", TaskStatus.PAUSED: "dim",
    ExecutionStatus.LOST: "red", ExecutionStatus.TIMEOUT: "red",
    WorkerLiveness.ONLINE: "green", WorkerLiveness.OFFLINE: "red", WorkerLiveness.STOPPED: "dim",
}  # fmt: skip
#: Width of tables written to files and pipes.
WIDE = 200


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO 8601 text, tuples as lists and numerics (sums of
    bigint columns come back as `Decimal`) as numbers."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(jsonable(value), indent=2))


def print_json_array(items: Iterable[Mapping[str, Any]]) -> None:
    """A JSON array, written item by item (listings may be long)."""
    out = sys.stdout
    separator = "[\n"
    for item in items:
        out.write(separator + json.dumps(jsonable(item)))
        separator = ",\n"
    out.write("[]\n" if separator == "[\n" else "\n]\n")


def print_csv(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> None:
    """CSV with a header; lists and objects as JSON text, None as an empty field."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        cells = [jsonable(row[field]) for field in fields]
        writer.writerow(
            "" if c is None else json.dumps(c) if isinstance(c, list | dict) else c for c in cells
        )


def print_table(rows: Iterable[Any], columns: Sequence[Column], title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, show_edge=False, header_style="bold")
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(cell(value(row)) for _, value in columns))
    out = console()
    if not out.is_terminal:  # rich assumes 80 columns: too narrow for files and pipes
        out.width = WIDE
    out.print(table)


def print_rows(
    rows: Iterable[Any],
    columns: Sequence[Column],
    *,
    as_json: bool,
    as_csv: bool = False,
    fields: Sequence[str] = (),
) -> None:
    """A listing as JSON (``as_json``), CSV of ``fields`` (``as_csv``) or a table."""
    if as_json:
        print_json_array(rows)
    elif as_csv:
        print_csv(rows, fields)
    else:
        print_table(rows, columns)


def cell(value: Any) -> Text:
    """A table cell: times shortened, statuses coloured, None empty."""
    from rich.text import Text

    if value is None:
        return Text("")
    if isinstance(value, datetime):
        return Text(format_time(value))
    if isinstance(value, list | tuple):
        return Text(", ".join(str(item) for item in value))
    text = str(value)
    return Text(text, style=STATUS_STYLES.get(text, ""))


def format_time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_bytes(count: int | None) -> str:
    """A size for people: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    if count is None:
        return ""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def open_client(state: CliState, *, read_only: bool = False) -> Client:
    """The command's client; ``read_only`` commands read from the read replica if one is
    set (``[database] read_url``) and answers, else from the primary."""
    return Client(settings=state.settings(), read_only=read_only)
