"""``scitq-fetch``: scitq v1's data command, with its sub-commands and flags, on
`scitq.fetch` (the same code as ``scitq fetch`` and the agents).

    scitq-fetch [-v] [-p N] copy SRC [DST]
    scitq-fetch list [--not-recursive] [--md5] URI      # full URIs
    scitq-fetch rlist [--not-recursive] [--md5] URI     # paths relative to URI
    scitq-fetch nrlist [--md5] URI                      # rlist --not-recursive
    scitq-fetch sync SRC DST [--include PATTERN]...
    scitq-fetch delete URI [--include PATTERN]... [--dryrun]
    scitq-fetch ncdu URI [--only-file]

Errors are one line on stderr, ``scitq-fetch: error: <message>``; exit codes as for
``scitq``: 2 for a URI scitq cannot use, 10 for a transfer that failed.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from scitq import fetch as v1
from scitq.cli import as_scitq_error, one_line

#: Columns of ``list`` (``rlist`` shows rel_name instead of name), as in v1.
_DATES = ("creation_date", "modification_date", "size")


class FetchGroup(click.Group):
    """One-line errors for every sub-command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            error = as_scitq_error(exc)
            if error is None:
                raise
            click.echo(f"scitq-fetch: error: {one_line(str(error))}", err=True)
            ctx.exit(error.exit_code)


@click.group(name="scitq-fetch", cls=FetchGroup)
@click.option("-v", "--verbose", is_flag=True, help="Turn log level to info.")
@click.option(
    "-p",
    "--process",
    type=click.IntRange(min=1),
    default=v1.MAX_PARALLEL_SYNC,
    show_default=True,
    help="Files moved at once by sync and delete.",
)
@click.pass_context
def scitq_fetch(ctx: click.Context, verbose: bool, process: int) -> None:
    """Copy, list, sync and delete data given as URIs (s3://, ftp://, http(s)://,
    file://) or local paths: scitq v1's scitq-fetch."""
    ctx.obj = process
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


@scitq_fetch.command("copy")
@click.argument("source_uri")
@click.argument("destination_uri", required=False)
def copy_command(source_uri: str, destination_uri: str | None) -> None:
    """Copy a file or a folder (a trailing /) to a file or a folder (default: .)."""
    v1.copy(source_uri, destination_uri or os.getcwd() + "/")


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _print_listing(uri: str, first: str, recursive: bool, md5: bool) -> None:
    headers = [first, *_DATES, *(["md5"] if md5 else [])]
    rows = [
        [_text(getattr(item, column)) for column in headers]
        for item in v1.list_content(uri, no_rec=not recursive, md5=md5)
    ]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


_NOT_RECURSIVE = click.option("--not-recursive", is_flag=True, help="Do not be recursive.")
_MD5 = click.option("--md5", is_flag=True, help="Fetch also MD5s.")


@scitq_fetch.command("list")
@_NOT_RECURSIVE
@_MD5
@click.argument("uri")
def list_command(not_recursive: bool, md5: bool, uri: str) -> None:
    """List the content of a folder (full URIs)."""
    _print_listing(uri, "name", not not_recursive, md5)


@scitq_fetch.command("rlist")
@_NOT_RECURSIVE
@_MD5
@click.argument("uri")
def rlist_command(not_recursive: bool, md5: bool, uri: str) -> None:
    """List the content of a folder (paths relative to URI)."""
    _print_listing(uri, "rel_name", not not_recursive, md5)


@scitq_fetch.command("nrlist")
@_MD5
@click.argument("uri")
def nrlist_command(md5: bool, uri: str) -> None:
    """Like rlist, not recursive."""
    _print_listing(uri, "rel_name", False, md5)


_INCLUDE = click.option(
    "--include",
    "include",
    multiple=True,
    help="Only files matching this pattern (repeatable).",
)


@scitq_fetch.command("sync")
@click.argument("source_uri")
@click.argument("destination_uri")
@_INCLUDE
@click.pass_obj
def sync_command(
    process: int, source_uri: str, destination_uri: str, include: Sequence[str]
) -> None:
    """Copy the files of a folder missing in another, or of another size (identity is
    name and size); nothing is deleted."""
    done = v1.sync(source_uri, destination_uri, include=list(include), process=process)
    click.echo(f"copied {len(done.copied)} files ({done.bytes} bytes), "
               f"{done.up_to_date} already up to date")  # fmt: skip


@scitq_fetch.command("delete")
@click.argument("uri")
@_INCLUDE
@click.option("--dryrun", is_flag=True, help="Print what would be deleted, delete nothing.")
def delete_command(uri: str, include: Sequence[str], dryrun: bool) -> None:
    """Delete a file, or the files of a folder (those matching --include)."""
    names = v1.recursive_delete(uri, include=list(include), dryrun=dryrun)
    for name in names:
        click.echo(f"{'would delete' if dryrun else 'deleted'} {name}")


@scitq_fetch.command("ncdu")
@click.argument("uri")
@click.option("--only-file", is_flag=True, help="Only write the ncdu file, do not run ncdu.")
def ncdu_command(uri: str, only_file: bool) -> None:
    """Browse the sizes below a folder with ncdu (or write ncdu's JSON file)."""
    program = shutil.which("ncdu")
    if not only_file and program is None:
        raise v1.UnsupportedError("ncdu is not installed: install it, or use --only-file")
    handle, name = tempfile.mkstemp(prefix="scitq-ncdu-", suffix=".json")
    os.close(handle)
    path = v1.ncdu_file(uri, Path(name))
    if only_file:
        click.echo(f"ncdu json file was stored in {path}")
        return
    try:
        subprocess.run([str(program), "-f", str(path)], check=False)
    finally:
        path.unlink(missing_ok=True)


def main() -> None:
    """Console-script entry point (``scitq-fetch``)."""
    scitq_fetch.main(prog_name="scitq-fetch")
