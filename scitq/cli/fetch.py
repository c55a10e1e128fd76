"""``scitq fetch``: copy, list and sync data with the same code tasks use (scitq.transfer).

A bare path (no ``scheme://``) is a local path. Credentials come from the scitq
configuration and the standard AWS files (docs/transfer.md). Exit codes: 0 done,
2 invalid URI or option, 10 the transfer failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from scitq.errors import InvalidUri
from scitq.transfer import RemoteEntry
from scitq.transfer.commands import copy_uri, list_entries, resolve, sync_folders, to_uri
from scitq.transfer.staging import remote_size


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
    source, target = to_uri(src, settings), to_uri(dst, settings)
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
    _resolved, entries = list_entries(to_uri(uri, settings), settings, recursive)
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
    time. Nothing is deleted at DST. SRC and DST are folders, with or without their
    trailing /.
    """
    settings = state.settings().transfer
    source, target = resolve(to_uri(src, settings), settings), to_uri(dst, settings)
    if not source.is_folder:
        raise InvalidUri("sync works on folders: SRC is a file (use scitq fetch copy)")
    total = None if quiet else remote_size(source, settings)
    with progress_bar(not quiet, total, source.text) as advance:
        done = sync_folders(source, target, settings, advance=advance)
    copied = len(done.copied)
    click.echo(f"copied {copied} files ({done.bytes} bytes), {done.up_to_date} already up to date")
