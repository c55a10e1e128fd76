"""``scitq fetch``: copy, list and sync data with the same code tasks use (scitq.transfer).

A bare path (no ``scheme://``) is a local path. Credentials come from the scitq
configuration and the standard AWS files (docs/transfer.md). Exit codes: 0 done,
2 invalid URI or option, 10 the transfer failed.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from scitq.cli import CliState, pass_state
from scitq.cli.output import print_json_array, print_table
from scitq.config import TransferSettings
from scitq.errors import InvalidUri, TransferError
from scitq.transfer import RemoteEntry, Uri, parse_uri, transport_for, validate_uri
from scitq.transfer.registry import scheme_info
from scitq.transfer.retry import with_retries
from scitq.transfer.staging import fetch_with_retries, remote_size
from scitq.transfer.transports.file import file_md5


def to_uri(text: str) -> Uri:
    """A URI, or a local path turned into a ``file://`` URI (a directory gets a ``/``)."""
    if "://" in text:
        return validate_uri(text, "input")
    path = Path(text).expanduser().absolute()
    folder = text.endswith("/") or path.is_dir()
    return parse_uri(f"file://{path}{'/' if folder and str(path) != '/' else ''}")


def _local(uri: Uri) -> Path | None:
    return Path(uri.rest) if uri.scheme == "file" else None


@contextmanager
def progress_bar(enabled: bool, total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (only on a terminal); yields the advance callback."""
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not (enabled and console.is_terminal),
        transient=True,
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda count: bar.advance(task, count)


def _upload(src: Path, dst: Uri, settings: TransferSettings, advance: Callable[[int], None]) -> int:
    if dst.actions:
        raise InvalidUri(f"{dst.text!r}: actions apply to downloads only")
    if not scheme_info(dst).upload:
        raise InvalidUri(f"{dst.text!r}: scheme {dst.scheme} is download-only")
    transport = transport_for(dst, settings)
    return with_retries(lambda _n: transport.upload(src, dst, advance), settings, dst.text)


def copy_uri(src: Uri, dst: Uri, settings: TransferSettings, advance: Callable[[int], None]) -> int:
    """Copy ``src`` to ``dst``; returns the bytes moved (downloaded, or uploaded)."""
    target = _local(dst)
    if target is not None:
        if src.is_folder or dst.is_folder or target.is_dir():
            return fetch_with_retries(src, target, settings, progress=advance)
        # SRC is one file and DST names the file to write
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".scitq-fetch-", dir=target.parent) as tmp:
            size = fetch_with_retries(src, Path(tmp), settings, progress=advance)
            produced = [p for p in Path(tmp).rglob("*") if p.is_file()]
            if len(produced) != 1:
                raise InvalidUri(
                    f"{src.text} gives {len(produced)} files: copy it into a folder (DST/)"
                )
            os.replace(produced[0], target)
        return size
    source = _local(src)
    if source is not None and not src.actions:
        if not source.exists():
            raise TransferError(src.text, "no such file or directory", retryable=False)
        return _upload(source, dst, settings, advance)
    with tempfile.TemporaryDirectory(prefix="scitq-fetch-") as tmp:
        fetch_with_retries(src, Path(tmp), settings, progress=advance)
        if not src.is_folder and not dst.is_folder:
            produced = [p for p in Path(tmp).rglob("*") if p.is_file()]
            if len(produced) == 1:
                return _upload(produced[0], dst, settings, advance)
            dst = parse_uri(dst.text + "/")
        folder = dst if dst.is_folder else parse_uri(dst.text + "/")
        return _upload(Path(tmp), folder, settings, advance)


def _entries(uri: Uri, settings: TransferSettings, recursive: bool) -> list[RemoteEntry]:
    return list(transport_for(uri, settings).list(uri, recursive))


def _same(src: Uri, dst: Uri, a: RemoteEntry, b: RemoteEntry | None) -> bool:
    """Whether ``b`` (at the destination) already matches ``a``."""
    if b is None or a.size != b.size:
        return False
    md5_a, md5_b = a.md5, b.md5
    if (md5_a is None) != (md5_b is None):
        # compute the missing local MD5 only when the other side has one and sizes agree
        if md5_a is None and _local(src) is not None:
            md5_a = file_md5(Path(_local(src) or "") / a.path)
        elif md5_b is None and _local(dst) is not None:
            md5_b = file_md5(Path(_local(dst) or "") / b.path)
    if md5_a is not None and md5_b is not None:
        return md5_a == md5_b
    if a.mtime is not None and b.mtime is not None:
        return b.mtime >= a.mtime
    return True


@click.group()
def fetch() -> None:
    """Copy, list and sync data (s3://, ftp://, http(s)://, file:// or local paths)."""


@fetch.command("copy")
@click.argument("src")
@click.argument("dst")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@pass_state
def copy_command(state: CliState, src: str, dst: str, quiet: bool) -> None:
    """Copy SRC to DST (a trailing / makes a folder, copied recursively)."""
    settings = state.settings().transfer
    source, target = to_uri(src), to_uri(dst)
    total = None if quiet else remote_size(source, settings)
    with progress_bar(not quiet, total, source.name or source.text) as advance:
        size = copy_uri(source, target, settings, advance)
    click.echo(f"copied {size} bytes from {source.text} to {target.text}")


@fetch.command("list")
@click.argument("uri")
@click.option("--recursive", "-r", is_flag=True, help="Every file below the folder.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def list_command(state: CliState, uri: str, recursive: bool, as_json: bool) -> None:
    """List a file or a folder (URI ending in /): path and size."""
    settings = state.settings().transfer
    entries = _entries(to_uri(uri), settings, recursive)
    if as_json:
        print_json_array(
            {"path": e.path + ("/" if e.is_dir else ""), "size": e.size, "md5": e.md5}
            for e in entries
        )
        return
    columns: list[tuple[str, Callable[[RemoteEntry], Any]]] = [
        ("PATH", lambda e: e.path + ("/" if e.is_dir else "")),
        ("SIZE", lambda e: "" if e.is_dir else e.size),
    ]
    if any(e.md5 for e in entries):  # e.g. run+fastq:// (ENA publishes them)
        columns.append(("MD5", lambda e: e.md5 or ""))
    print_table(entries, columns)


@fetch.command("sync")
@click.argument("src")
@click.argument("dst")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@pass_state
def sync_command(state: CliState, src: str, dst: str, quiet: bool) -> None:
    """Copy the files of folder SRC that are missing or differ in folder DST.

    Files are compared by MD5 when both sides know it, else by size and modification
    time. Nothing is deleted at DST.
    """
    settings = state.settings().transfer
    source, target = to_uri(src), to_uri(dst)
    if not source.is_folder or not target.is_folder:
        raise InvalidUri("sync works on folders: end both URIs with / (or name directories)")
    if source.actions:
        raise InvalidUri(f"{source.text!r}: sync takes no actions")
    wanted = _entries(source, settings, recursive=True)
    try:
        present = {e.path: e for e in _entries(target, settings, recursive=True)}
    except TransferError as exc:
        if exc.retryable:
            raise
        present = {}  # the destination does not exist yet
    todo = [e for e in wanted if not _same(source, target, e, present.get(e.path))]
    moved = 0
    with progress_bar(not quiet, sum(e.size for e in todo), source.text) as advance:
        for entry in todo:
            moved += _sync_one(source, target, entry.path, settings, advance)
    click.echo(
        f"copied {len(todo)} files ({moved} bytes), {len(wanted) - len(todo)} already up to date"
    )


def _sync_one(
    source: Uri, target: Uri, relative: str, settings: TransferSettings, advance: Any
) -> int:
    src = source.child(relative)
    local_target = _local(target)
    if local_target is not None:
        directory = posixpath.dirname(relative)
        return fetch_with_retries(src, local_target / directory, settings, progress=advance)
    return copy_uri(src, target.child(relative), settings, advance)
