"""Jinja filters that turn values into short text for people: durations, sizes, times."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from markupsafe import Markup

from scitq.web.ansi import ansi_to_html

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def duration(seconds: float | None) -> str:
    """``0.4 s``, ``12 s``, ``3m 05s``, ``2h 04m``, ``3d 02h``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def size(count: int | float | None) -> str:
    """``512 B``, ``1.5 MiB``; ``-`` for None."""
    if count is None:
        return "-"
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def when(moment: datetime | None) -> str:
    """A time as ``YYYY-mm-dd HH:MM:SS`` UTC; ``-`` for None."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(moment: datetime | None) -> str:
    """How long ago: ``5 s ago``, ``3m 05s ago``; ``never`` for None."""
    if moment is None:
        return "never"
    delta = (datetime.now(UTC) - moment).total_seconds()
    if delta < 0:
        return "in " + duration(-delta)
    return duration(delta) + " ago"


def percent(part: int | float, whole: int | float) -> float:
    """``part`` as a percentage of ``whole`` (0 when ``whole`` is 0)."""
    return 100.0 * part / whole if whole else 0.0


def ansi(text: str) -> Markup:
    return ansi_to_html(text)


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(duration=duration, size=size, when=when, ago=ago, ansi=ansi)
    app.jinja_env.globals.update(percent=percent)
