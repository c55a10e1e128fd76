"""The throughput chart: attempts ended per minute, laid out for a small SVG drawn by
the template (no JavaScript, no chart library)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from scitq.states import ExecutionStatus

WIDTH = 600
HEIGHT = 120
#: The columns of a bucket: attempts ended in success, and the others (lost and timed
#: out ones count as failed).
SUCCEEDED, FAILED = ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED


@dataclass(frozen=True, slots=True)
class Bar:
    """One bucket: green for succeeded on top of red for failed."""

    x: float
    width: float
    start: datetime
    succeeded: int
    failed: int
    succeeded_y: float
    succeeded_height: float
    failed_y: float
    failed_height: float


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    peak: int
    succeeded: int
    failed: int
    bucket_seconds: float
    window_seconds: float
    #: The y axis: (label, y) of the gridlines, top first (attempts per bucket).
    y_ticks: tuple[tuple[str, float], ...] = ()
    #: The x axis: the times under the left edge, the middle and the right edge.
    x_ticks: tuple[datetime, ...] = ()


def _y_ticks(peak: int, scale: float) -> tuple[tuple[str, float], ...]:
    """Gridlines at the peak, its half (when it is a whole number) and zero."""
    if peak == 0:
        return (("0", float(HEIGHT)),)
    values = [peak, peak // 2, 0] if peak >= 2 else [peak, 0]
    return tuple((str(value), HEIGHT - value * scale) for value in dict.fromkeys(values))


def throughput_chart(
    rows: Sequence[dict[str, Any]],
    *,
    window_seconds: float,
    bucket_seconds: float,
    now: datetime | None = None,
) -> Chart:
    """Place one bar per bucket of the last ``window_seconds`` (empty buckets too)."""
    now = now or datetime.now(UTC)
    count = max(1, round(window_seconds / bucket_seconds))
    step = timedelta(seconds=bucket_seconds)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)  # the origin of the query's date_bin
    last = epoch + step * ((now - epoch) // step)
    starts = [last - step * (count - 1 - index) for index in range(count)]
    by_start = {row["bucket"]: row for row in rows}
    peak = max([int(row[SUCCEEDED]) + int(row[FAILED]) for row in rows] or [0])
    scale = (HEIGHT - 4) / peak if peak else 0.0
    slot = WIDTH / count
    bars = []
    for index, start in enumerate(starts):
        row = by_start.get(start, {SUCCEEDED: 0, FAILED: 0})
        succeeded, failed = int(row[SUCCEEDED]), int(row[FAILED])
        failed_height = failed * scale
        succeeded_height = succeeded * scale
        failed_y = HEIGHT - failed_height
        bars.append(
            Bar(
                x=index * slot,
                width=max(slot - 1, 1),
                start=start,
                succeeded=succeeded,
                failed=failed,
                succeeded_y=failed_y - succeeded_height,
                succeeded_height=succeeded_height,
                failed_y=failed_y,
                failed_height=failed_height,
            )
        )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        bars=tuple(bars),
        peak=peak,
        succeeded=sum(bar.succeeded for bar in bars),
        failed=sum(bar.failed for bar in bars),
        bucket_seconds=bucket_seconds,
        window_seconds=window_seconds,
        y_ticks=_y_ticks(peak, scale),
        x_ticks=(starts[0], starts[len(starts) // 2], starts[-1] + step),
    )
