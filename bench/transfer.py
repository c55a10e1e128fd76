"""S3 throughput through scitq.transfer vs plain boto3, against one moto server.

Run: ``PYTHONPATH=. python bench/transfer.py [--quick] [--repeat N]``. Prints the
machine and a table; paste it into bench/RESULTS.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import psutil
from boto3.s3.transfer import TransferConfig

from scitq.config import S3Settings, TransferSettings
from scitq.transfer import stage_inputs, upload_outputs

KEY, SECRET, REGION = "bench", "bench-secret", "us-east-1"
MIB = 2**20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(port: int, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"moto did not start; see {log}")


def table(title: str, header: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        " | ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in (header, *rows)
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return f"\n{title}\n\n" + "\n".join(lines)


def machine() -> str:
    with open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if "model name" in line), "?")
    ram = psutil.virtual_memory().total / 2**30
    import moto

    return (
        f"date {date.today()}; CPU {cpu}, {os.cpu_count()} cores, {ram:.1f} GiB RAM; "
        f"Python {sys.version.split()[0]}, boto3 {boto3.__version__}, moto {moto.__version__}"
    )


def timed(
    actions: dict[str, tuple[Callable[[], Any], Callable[[], None]]], repeat: int
) -> dict[str, float]:
    """Median seconds of each (action, untimed reset) over ``repeat`` rounds.

    The order is reversed every other round so that neither tool always goes first
    (the first upload to new keys, a cold page cache...).
    """
    times: dict[str, list[float]] = {label: [] for label in actions}
    for round_number in range(repeat):
        labels = list(actions) if round_number % 2 == 0 else list(reversed(actions))
        for label in labels:
            action, reset = actions[label]
            reset()
            start = time.perf_counter()
            action()
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in times.items()}


def measure(
    work: Path,
    count: int,
    size_mib: int,
    settings: TransferSettings,
    client: Any,
    config: TransferConfig,
    repeat: int,
) -> list[list[str]]:
    """Upload and download ``count`` files of ``size_mib`` MiB both ways; table rows."""
    source = work / f"src-{count}x{size_mib}"
    source.mkdir(parents=True)
    for index in range(count):
        (source / f"f{index:03d}").write_bytes(os.urandom(size_mib * MIB))
    total = count * size_mib * MIB
    prefix = f"{count}x{size_mib}"
    names = sorted(path.name for path in source.iterdir())
    down = work / "down"

    def clear_down() -> None:
        shutil.rmtree(down, ignore_errors=True)
        down.mkdir()

    def nothing() -> None:
        pass

    def boto_put(name: str) -> None:
        client.upload_file(str(source / name), "bench", f"{prefix}/{name}", Config=config)

    def boto_get(name: str) -> None:
        client.download_file("bench", f"{prefix}/{name}", str(down / name), Config=config)

    def boto_up() -> None:
        with ThreadPoolExecutor(settings.parallel) as pool:
            list(pool.map(boto_put, names))

    def boto_down() -> None:
        with ThreadPoolExecutor(settings.parallel) as pool:
            list(pool.map(boto_get, names))

    def scitq_up() -> None:
        upload_outputs(source, f"s3://bench/{prefix}/", settings)

    def scitq_down() -> None:
        stage_inputs([f"s3://bench/{prefix}/{name}" for name in names], down, settings)

    figures = timed(
        {
            "upload boto3": (boto_up, nothing),
            "upload scitq": (scitq_up, nothing),
            "download boto3": (boto_down, clear_down),
            "download scitq": (scitq_down, clear_down),
        },
        repeat,
    )
    rows = []
    for label, seconds in figures.items():
        direction, tool = label.split()
        plain = figures[f"{direction} boto3"]
        rows.append([
            f"{count} x {size_mib} MiB", direction, tool, f"{seconds:.2f}",
            f"{total / MIB / seconds:.0f}", f"{seconds / plain:.2f}",
        ])  # fmt: skip
        print(" | ".join(rows[-1]), flush=True)
    shutil.rmtree(source)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1x32 MiB and 16x1 MiB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args()
    shapes = [(1, 32), (16, 1)] if args.quick else [(1, 256), (64, 4)]

    work = Path(tempfile.mkdtemp(prefix="scitq-bench-transfer-"))
    port = free_port()
    moto = start_moto(port, work / "moto.log")
    endpoint = f"http://127.0.0.1:{port}"
    try:
        settings = TransferSettings(
            s3=S3Settings(
                endpoint_url=endpoint, region=REGION, access_key_id=KEY, secret_access_key=SECRET
            ),
            cache_dir=work / "cache",
        )
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
        )
        client.create_bucket(Bucket="bench")
        # the same part size and concurrency as scitq's defaults, for a like-for-like
        config = TransferConfig(
            multipart_threshold=settings.s3.multipart_threshold,
            multipart_chunksize=settings.s3.multipart_chunksize,
            max_concurrency=settings.s3.max_concurrency,
        )
        rows: list[list[str]] = []
        print(machine(), flush=True)
        print(f"moto server at {endpoint}; {args.repeat} runs per figure (median)", flush=True)
        for count, size_mib in shapes:
            rows += measure(work, count, size_mib, settings, client, config, args.repeat)
        print(
            table(
                "S3 throughput, scitq.transfer vs plain boto3 (4 files at a time, same parts)",
                ("files", "direction", "tool", "seconds", "MiB/s", "time vs boto3"),
                rows,
            )
        )
    finally:
        moto.terminate()
        moto.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
