"""The host metrics of the workers page: each worker's latest figures, and a small chart
of its last hour (CPU busy and I/O wait, in percent) as SVG polylines the template draws
(no JavaScript, no chart library)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

WIDTH = 160
HEIGHT = 36
#: The chart's span, in seconds.
WINDOW_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class HostChart:
    """One worker's figures: ``latest`` is its newest sample (a row of
    ``scitq.worker_metrics``); the points are ``x,y`` pairs for SVG ``polyline``s."""

    latest: Mapping[str, Any]
    cpu_points: str
    iowait_points: str
    samples: int
    width: int = WIDTH
    height: int = HEIGHT


def _points(samples: list[Mapping[str, Any]], key: str, start: datetime) -> str:
    points = []
    for sample in samples:
        value = sample[key]
        if value is None:
            continue
        x = (sample["at"] - start).total_seconds() / WINDOW_SECONDS * WIDTH
        y = HEIGHT - min(100.0, max(0.0, float(value))) / 100.0 * (HEIGHT - 1) - 0.5
        points.append(f"{max(0.0, x):.1f},{y:.1f}")
    return " ".join(points)


def host_charts(
    rows: Iterable[Mapping[str, Any]], now: datetime | None = None
) -> dict[int, HostChart]:
    """The chart of each worker with samples, by worker id (rows oldest first)."""
    by_worker: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_worker.setdefault(int(row["worker_id"]), []).append(row)
    start = (now or datetime.now(UTC)).timestamp() - WINDOW_SECONDS
    origin = datetime.fromtimestamp(start, UTC)
    return {
        worker_id: HostChart(
            latest=samples[-1],
            cpu_points=_points(samples, "cpu_percent", origin),
            iowait_points=_points(samples, "iowait_percent", origin),
            samples=len(samples),
        )
        for worker_id, samples in by_worker.items()
    }
