"""Rendering helpers without a database: ANSI output, the throughput chart, formats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scitq.web.ansi import ansi_to_html
from scitq.web.chart import throughput_chart
from scitq.web.formatting import duration, size


def test_ansi_text_is_escaped_before_colours_become_spans() -> None:
    html = str(ansi_to_html("\x1b[31m<script>alert(1)</script>\x1b[0m & done"))
    assert html == '<span class="ansi-fg-1">&lt;script&gt;alert(1)&lt;/script&gt;</span> &amp; done'


def test_ansi_attributes_bright_colours_and_resets() -> None:
    html = str(ansi_to_html("\x1b[1;92;44mA\x1b[22mB\x1b[39;49mC\x1b[m"))
    assert html == (
        '<span class="ansi-bg-4 ansi-bold ansi-fg-10">A</span>'
        '<span class="ansi-bg-4 ansi-fg-10">B</span>C'
    )


def test_ansi_256_colours_and_other_sequences() -> None:
    assert str(ansi_to_html("\x1b[38;5;9mX\x1b[0m")) == '<span class="ansi-fg-9">X</span>'
    assert str(ansi_to_html("\x1b[38;2;1;2;3mX\x1b[0m")) == "X"  # true colour: dropped
    # cursor moves, erase line, window titles and stray control characters are removed
    assert str(ansi_to_html("a\x1b[2K\x1b[1Ab\x1b]0;title\x07c\x07d\r\n")) == "abcd\r\n"


def test_an_unclosed_colour_is_closed() -> None:
    assert str(ansi_to_html("\x1b[33mwarn")) == '<span class="ansi-fg-3">warn</span>'


def test_chart_has_one_bar_per_minute_scaled_to_the_peak() -> None:
    now = datetime(2026, 1, 1, 12, 30, 30, tzinfo=UTC)
    minute = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    rows = [
        {"bucket": minute, "succeeded": 6, "failed": 2},
        {"bucket": minute - timedelta(minutes=5), "succeeded": 4, "failed": 0},
        {"bucket": minute - timedelta(hours=2), "succeeded": 99, "failed": 0},  # outside
    ]
    chart = throughput_chart(rows[:2], window_seconds=3600, bucket_seconds=60, now=now)
    assert len(chart.bars) == 60
    assert chart.bars[-1].start == minute
    assert (chart.succeeded, chart.failed, chart.peak) == (10, 2, 8)
    last = chart.bars[-1]
    assert last.failed_y + last.failed_height == chart.height
    assert abs(last.succeeded_height + last.failed_height - (chart.height - 4)) < 1e-9
    assert chart.bars[-6].succeeded == 4 and chart.bars[-6].failed_height == 0
    empty = throughput_chart([], window_seconds=3600, bucket_seconds=60, now=now)
    assert empty.peak == 0 and all(bar.succeeded_height == 0 for bar in empty.bars)


def test_durations_and_sizes() -> None:
    assert [duration(x) for x in (None, 0.44, 42, 185, 7440, 180000)] == [
        "-", "0.4 s", "42 s", "3m 05s", "2h 04m", "2d 02h"
    ]  # fmt: skip
    assert [size(x) for x in (None, 512, 1536, 3 * 2**30)] == ["-", "512 B", "1.5 KiB", "3.0 GiB"]


def test_chart_axes_label_the_peak_and_the_window() -> None:
    now = datetime(2026, 1, 1, 12, 30, 30, tzinfo=UTC)
    minute = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    rows = [{"bucket": minute, "succeeded": 6, "failed": 2}]
    chart = throughput_chart(rows, window_seconds=3600, bucket_seconds=60, now=now)
    labels = [label for label, _ in chart.y_ticks]
    assert labels == ["8", "4", "0"]
    ys = [y for _, y in chart.y_ticks]
    assert ys[0] == chart.bars[-1].succeeded_y and ys[-1] == chart.height
    assert chart.x_ticks[0] == minute - timedelta(minutes=59)
    assert chart.x_ticks[-1] == minute + timedelta(minutes=1)
    empty = throughput_chart([], window_seconds=3600, bucket_seconds=60, now=now)
    assert empty.y_ticks == (("0", float(empty.height)),)
