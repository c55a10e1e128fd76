"""Retries, back-off and deadlines of stage_inputs / upload_outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from scitq.config import TransferSettings
from scitq.errors import TransferError
from scitq.transfer import stage_inputs, upload_outputs
from scitq.transfer.retry import backoff_seconds, item_timeout
from tests.fixtures.servers import HttpServer, fast_settings, write_random


def test_transient_errors_are_retried(http_server: HttpServer, tmp_path: Path) -> None:
    data = write_random(http_server.root / "retry" / "a.bin", 5000, seed=11)
    http_server.failures["/retry/a.bin"] = 2
    got = stage_inputs([http_server.url("retry/a.bin")], tmp_path / "in", fast_settings(tmp_path))
    assert got == 5000
    assert http_server.gets["/retry/a.bin"] == 3
    assert (tmp_path / "in" / "a.bin").read_bytes() == data


def test_retries_are_bounded(http_server: HttpServer, tmp_path: Path) -> None:
    write_random(http_server.root / "retry" / "b.bin", 10, seed=12)
    http_server.failures["/retry/b.bin"] = 10
    with pytest.raises(TransferError, match="HTTP 503") as caught:
        stage_inputs([http_server.url("retry/b.bin")], tmp_path / "in", fast_settings(tmp_path))
    assert caught.value.retryable
    assert http_server.gets["/retry/b.bin"] == 3  # 1 + retries (2)
    assert list((tmp_path / "in").iterdir()) == []


def test_deadline_ends_a_slow_transfer(http_server: HttpServer, tmp_path: Path) -> None:
    write_random(http_server.root / "slow" / "c.bin", 2_000_000, seed=13)
    settings = fast_settings(tmp_path, timeout_base_seconds=0.0, timeout_min_rate_bytes=1e12)
    with pytest.raises(TransferError, match="timed out"):
        stage_inputs([http_server.url("slow/c.bin")], tmp_path / "in", settings)
    assert list((tmp_path / "in").iterdir()) == []


def test_backoff_and_timeout_formulas() -> None:
    settings = TransferSettings(
        backoff_base_seconds=2.0, backoff_max_seconds=10.0, timeout_base_seconds=60.0,
        timeout_min_rate_bytes=1e6,
    )  # fmt: skip
    assert 1.0 <= backoff_seconds(0, settings) <= 2.0
    assert 4.0 <= backoff_seconds(2, settings) <= 8.0
    assert 5.0 <= backoff_seconds(10, settings) <= 10.0  # capped
    assert item_timeout(0, settings) == 60.0
    assert item_timeout(100_000_000, settings) == 160.0  # grows with size


def test_upload_outputs_of_missing_or_empty_dir(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path)
    assert upload_outputs(tmp_path / "missing", f"file://{tmp_path}/dest/", settings) == 0
    (tmp_path / "empty").mkdir()
    assert upload_outputs(tmp_path / "empty", f"file://{tmp_path}/dest/", settings) == 0
    write_random(tmp_path / "out" / "x" / "y.txt", 7)
    assert upload_outputs(tmp_path / "out", f"file://{tmp_path}/dest", settings) == 7
    assert (tmp_path / "dest" / "x" / "y.txt").stat().st_size == 7


def test_cancel_stops_transfers(http_server: HttpServer, tmp_path: Path) -> None:
    import threading

    write_random(http_server.root / "cancel" / "big.bin", 3_000_000, seed=14)
    settings = fast_settings(tmp_path)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TransferError, match="canceled") as before:
        stage_inputs([http_server.url("cancel/big.bin")], tmp_path / "in", settings, cancel=cancel)
    assert not before.value.retryable
    assert http_server.gets["/cancel/big.bin"] == 0

    during = threading.Event()
    with pytest.raises(TransferError, match="canceled"):
        stage_inputs(
            [http_server.url("cancel/big.bin")],
            tmp_path / "in",
            settings,
            progress=lambda _count: during.set(),  # cancel after the first chunk
            cancel=during,
        )
    assert http_server.gets["/cancel/big.bin"] == 1  # not retried
    assert not any((tmp_path / "in").iterdir())
