"""Options and checks shared by several command groups."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: Bounds of PostgreSQL integer columns (retries, priority) and of ids.
INT_MAX = 2**31 - 1
#: Longest delay or timeout accepted (about 31 years): beyond it, time arithmetic
#: in the database overflows.
MAX_SECONDS = 1e9


def within(low: float, high: float) -> Any:
    """A click callback refusing values outside [low, high], and nan (which passes click's
    own range checks); the bounds stay out of the help."""

    def check(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
        if value is not None and not low <= value <= high:
            raise click.BadParameter(f"{value} is not in [{low:g}, {high:g}]", ctx, param)
        return value

    return check


def output_options(function: F) -> F:
    """``--json`` and ``--csv`` flags."""
    function = click.option("--csv", "as_csv", is_flag=True, help="Print CSV for scripts.")(
        function
    )
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(function)


_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class ByteSize(click.ParamType):  # type: ignore[type-arg]
    """A size in bytes: ``1048576``, ``512M``, ``20G``, ``1.5T`` (units of 1024)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        found = _SIZE.fullmatch(str(value).strip())
        if found is None:
            self.fail(
                f"{value!r} is not a size: use bytes or a number with K, M, G or T", param, ctx
            )
        return int(float(found[1]) * _SIZE_UNITS[found[2].lower()])


BYTE_SIZE = ByteSize()
