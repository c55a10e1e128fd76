"""The tables scitq v1's commands printed (``tabulate``'s ``plain`` format, v1's cell
conversions), so that the shell pipelines built on them keep working."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

#: v1 cut longer text cells (``-L``/``--long`` shows them whole).
MAX_LENGTH_STR = 50


def cell(value: Any, long: bool = False) -> Any:
    """A value as v1 showed it: dates as text, long text cut, lists joined with commas,
    booleans as ``X`` or nothing, None as nothing."""
    if isinstance(value, datetime):
        # v1's server stored UTC dates without a zone
        moment = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return str(moment)
    if isinstance(value, str) and not long and len(value) > MAX_LENGTH_STR:
        return value[: MAX_LENGTH_STR - 1] + "..."
    if isinstance(value, list | tuple):
        return ",".join(str(element) for element in value)
    if isinstance(value, bool):
        return "X" if value else ""
    if value is None:
        return ""
    return value


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def plain_table(rows: Sequence[Sequence[Any]], headers: Sequence[str] = ()) -> str:
    """``tabulate(rows, headers, tablefmt="plain")``: columns two spaces apart, numbers
    right-aligned, text left-aligned, a header line when headers are given; a cell of
    several lines spans as many lines of its row."""
    columns = max([len(headers), *(len(row) for row in rows)], default=0)
    if columns == 0:
        return ""
    texts = [[str(row[i]).split("\n") if i < len(row) else [""] for i in range(columns)]
             for row in rows]  # fmt: skip
    heads = [headers[i] if i < len(headers) else "" for i in range(columns)]
    right = []
    for i in range(columns):
        values = [row[i] for row in rows if i < len(row) and row[i] not in ("", None)]
        right.append(bool(values) and all(_numeric(value) for value in values))
    widths = [
        max([len(heads[i]) if headers else 0, *(len(line) for text in texts for line in text[i])])
        for i in range(columns)
    ]

    def line(items: Sequence[str]) -> str:
        return "  ".join(
            item.rjust(widths[i]) if right[i] else item.ljust(widths[i])
            for i, item in enumerate(items)
        )

    lines = [line(heads)] if headers else []
    for text in texts:
        height = max(len(cell_lines) for cell_lines in text)
        for n in range(height):
            lines.append(
                line([cell_lines[n] if n < len(cell_lines) else "" for cell_lines in text])
            )
    return "\n".join(lines)


def print_items(
    items: Iterable[Mapping[str, Any]], columns: Sequence[str], headers: bool, long: bool = False
) -> None:
    """Print v1 objects (dicts) as v1's ``__list_print``: one row each, ``columns``."""
    rows = [[cell(item.get(key), long) for key in columns] for item in items]
    print(plain_table(rows, columns if headers else ()))
