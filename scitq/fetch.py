"""scitq v1's ``scitq.fetch``: the same functions and signatures, on `scitq.transfer`.

    from scitq.fetch import list_content, sync

    fastqs = [item.name for item in list_content("s3://bucket/runs") if
              item.name.endswith(".fastq.gz")]
    sync("s3://bucket/results/", "results")

A bare path (no ``scheme://``) is a local path; ``s3://bucket/prefix`` without its
trailing ``/`` is the folder when no such object exists, as in v1. Endpoints and
credentials come from the scitq configuration (``[transfer.s3]``, ``SCITQ_S3_*``, the
AWS files: docs/transfer.md), not from rclone. Errors are `FetchError` (a transfer that
failed), `FetchErrorNoRepeat` (one that cannot succeed by trying again) and
`UnsupportedError` (a URI scitq cannot use); all are `scitq.errors.ScitqError`s.
What differs from v1 is listed in docs/v1-migration.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from scitq.config import TransferSettings, load_settings
from scitq.errors import InvalidArgument, ScitqError, TransferError
from scitq.transfer import RemoteEntry, Uri, parse_uri, validate_uri
from scitq.transfer.commands import (
    SyncResult,
    copy_uri,
    delete_uri,
    list_entries,
    local_path,
    sync_folders,
    to_uri,
)
from scitq.transfer.transports.file import file_md5
from scitq.version import __version__

log = logging.getLogger(__name__)

__all__ = ["FetchError", "FetchErrorNoRepeat", "Info", "Item", "UnsupportedError", "check_uri",
           "copy", "delete", "get", "get_file_uri", "info", "list_content", "ncdu", "pathjoin",
           "put", "recursive_delete", "sync"]  # fmt: skip

#: v1's default parallelism of `sync` (``scitq-fetch -p``).
MAX_PARALLEL_SYNC = 10


class FetchError(ScitqError):
    """A transfer failed (v1's name)."""

    exit_code = 10


class FetchErrorNoRepeat(FetchError):
    """A transfer that trying again cannot fix (a missing object, refused credentials)."""


class UnsupportedError(FetchErrorNoRepeat):
    """A URI scitq cannot use: malformed, unknown scheme, or an operation the scheme
    lacks (deleting over http...)."""

    exit_code = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    """One entry of `list_content` (v1's attributes).

    Attributes:
        name: the full URI of the entry (a sub-folder's ends with ``/``).
        rel_name: its path relative to the listed folder (a file URI: its name).
        size: bytes (0 for a sub-folder).
        creation_date, modification_date: the modification time (UTC) when known, else
            None; stores keep no creation date, so both are the same (as in v1).
        md5: the hex MD5 when asked for (``md5=True``) and known, else None.
    """

    name: str
    rel_name: str
    size: int
    creation_date: datetime.datetime | None
    modification_date: datetime.datetime | None
    md5: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Info:
    """What `info` tells of a URI (v1's attributes); ``type`` is ``file`` or ``dir``."""

    size: int
    creation_date: datetime.datetime | None
    modification_date: datetime.datetime | None
    md5: str | None
    type: str


@contextmanager
def _translated() -> Iterator[None]:
    """scitq's errors as v1's: `FetchError` and its subclasses, with the same message."""
    try:
        yield
    except TransferError as exc:
        kind = FetchError if exc.retryable else FetchErrorNoRepeat
        raise kind(str(exc)) from exc
    except InvalidArgument as exc:  # InvalidUri included
        raise UnsupportedError(str(exc)) from exc


def _settings(parallel: int | None = None) -> TransferSettings:
    settings = load_settings().transfer
    if parallel is not None and parallel >= 1:
        settings = dataclasses.replace(settings, parallel=parallel)
    return settings


def _date(mtime: float | None) -> datetime.datetime | None:
    return None if mtime is None else datetime.datetime.fromtimestamp(mtime, datetime.UTC)


def _md5(uri: Uri, entry: RemoteEntry, wanted: bool) -> str | None:
    if not wanted or entry.is_dir:
        return None
    path = local_path(uri)
    if path is not None:
        return file_md5(path / entry.path if uri.is_folder else path)
    return entry.md5


def _uri(text: str | Path) -> Uri:
    return to_uri(str(text))


def _each(items: str | Iterable[str]) -> list[str]:
    return [items] if isinstance(items, str | Path) else [str(i) for i in items]


def get_file_uri(uri: str) -> str | None:
    """The local path of ``uri`` (``file://path`` or a plain path), None for a remote URI."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    return uri if ":" not in uri else None


def check_uri(uri: str) -> str:
    """The scheme of ``uri`` if scitq can use it.

    Raises:
        UnsupportedError: the URI is malformed or its scheme unknown (named in the message).
    """
    with _translated():
        return validate_uri(uri).scheme


def pathjoin(*items: str) -> str:
    """Join URI or path parts with single ``/`` between them (leading and trailing
    slashes of the first and last parts are kept), as v1's ``pathjoin``."""
    if not items:
        return ""
    last = len(items) - 1
    parts = [
        item.rstrip("/") if rank == 0 else item.lstrip("/") if rank == last else item.strip("/")
        for rank, item in enumerate(items)
    ]
    return "/".join(parts).replace("/./", "/")


def list_content(uri: str, no_rec: bool = False, md5: bool = False) -> list[Item]:
    """The files below the folder ``uri`` (recursively unless ``no_rec``: then its direct
    entries, sub-folders included with a trailing ``/``), or the file ``uri`` itself.

    Raises:
        FetchErrorNoRepeat: the URI names nothing (``list of ... failed: not found``).
    """
    with _translated():
        resolved, entries = list_entries(_uri(uri), _settings(), recursive=not no_rec)
        items = []
        for entry in entries:
            relative = entry.path + ("/" if entry.is_dir else "")
            name = resolved.child(relative).text if resolved.is_folder else resolved.text
            date = _date(entry.mtime)
            digest = _md5(resolved, entry, md5)
            items.append(Item(name, relative, entry.size, date, date, digest))
        return items


def info(uri: str, md5: bool = False) -> Info:
    """Size, dates, MD5 (when asked) and type (``file``/``dir``) of ``uri``."""
    with _translated():
        resolved, entries = list_entries(_uri(uri), _settings(), recursive=False)
        if resolved.is_folder:
            dates = [e.mtime for e in entries if e.mtime is not None]
            date = _date(max(dates)) if dates else None
            return Info(0, date, date, None, "dir")
        (entry,) = entries
        date = _date(entry.mtime)
        return Info(entry.size, date, date, _md5(resolved, entry, md5), "file")


def _local_target(destination: str | Path) -> Uri:
    text = str(destination)
    path = get_file_uri(text)
    if path is None:
        raise UnsupportedError(f"destination {text!r} must be a local path")
    return to_uri(path if path else ".")


def get(
    uri: str | Iterable[str],
    destination: str | Path,
    parallel: int | None = None,
    show_progress: bool = False,
) -> None:
    """Download ``uri`` (or each URI of a list) to the local ``destination``.

    A file goes into ``destination`` when it is a directory or ends with ``/``, else it
    is written as ``destination``; a folder is copied recursively into ``destination``.
    Actions apply (``|gunzip``, ``|untar``, ``|unzip``, ``|mv:subdir``). A list of URIs
    all go into the folder ``destination``.
    ``show_progress`` is accepted and ignored (no rclone progress bar).
    """
    settings = _settings(parallel)
    uris = _each(uri)
    if not isinstance(uri, str | Path):  # several URIs: destination is a folder
        destination = str(destination).rstrip("/") + "/"
    with _translated():
        for one in uris:
            copy_uri(_uri(one), _local_target(destination), settings)


def put(
    source: str | Path, uri: str, parallel: int | None = None, show_progress: bool = False
) -> None:
    """Upload the local file (or directory) ``source`` to ``uri`` (into it when ``uri``
    ends with ``/``)."""
    settings = _settings(parallel)
    with _translated():
        path = Path(str(source))
        if not path.exists():
            raise TransferError(str(source), "no such file or directory", retryable=False)
        target = to_uri(uri, settings)
        if local_path(target) is None:
            validate_uri(target.text, "output", settings)
        copy_uri(to_uri(str(path)), target, settings)


def copy(
    source_uri: str,
    destination_uri: str,
    show_progress: bool = False,
    file_list: Sequence[str] | None = None,
) -> None:
    """Copy between two URIs or paths (either may be remote; between two remotes the
    data passes through a temporary local folder). With ``file_list``, only those
    files (relative to the folder ``source_uri``) are copied."""
    settings = _settings()
    with _translated():
        src, dst = _uri(source_uri), _uri(destination_uri)
        if not file_list:
            copy_uri(src, dst, settings)
            return
        if not src.is_folder:
            src = parse_uri(src.text + "/")
        folder = dst if dst.is_folder else parse_uri(dst.text + "/")
        for name in file_list:
            copy_uri(src.child(name), folder.child(name), settings)


def sync(
    uri1: str,
    uri2: str,
    include: Sequence[str] | None = None,
    process: int = MAX_PARALLEL_SYNC,
    show_progress: bool = False,
) -> SyncResult:
    """Copy the files of folder ``uri1`` missing at folder ``uri2`` or of another size
    (v1's identity: name and size); nothing is deleted. Either side may be a local path,
    created when missing. ``include``: fnmatch patterns (on the relative path or the
    file name); only matching files are copied. Returns what was copied."""
    settings = _settings()
    with _translated():
        return sync_folders(
            _uri(uri1), _uri(uri2), settings, include=include or (), parallel=process, by_size=True
        )


def delete(uri: str) -> None:
    """Delete the file ``uri`` (a folder: every file below it)."""
    with _translated():
        delete_uri(_uri(uri), _settings())


def recursive_delete(
    uri: str, include: Sequence[str] | None = None, dryrun: bool = False
) -> list[str]:
    """Delete the files below ``uri`` matching ``include`` (all when None); with
    ``dryrun``, only tell what would go. Each file is logged (a warning, as in v1).
    Returns the URIs deleted (or that would be)."""
    with _translated():
        deleted = delete_uri(_uri(uri), _settings(), include=include or (), dry_run=dryrun)
    for name in deleted:
        log.warning("%s %s", "Would delete" if dryrun else "Deleted", name)
    return deleted


def ncdu(uri: str, output_file: IO[str]) -> None:
    """Write the listing of ``uri`` to ``output_file`` in ncdu's JSON export format
    (``ncdu -f FILE`` browses it)."""
    root: dict[str, Any] = {}
    for item in list_content(uri):
        *folders, name = item.rel_name.split("/")
        folder = root
        for part in folders:
            folder = folder.setdefault(part + "/", {})
        mtime = int(item.modification_date.timestamp()) if item.modification_date else 0
        folder[name] = {"name": name, "dsize": item.size, "mtime": mtime}

    def tree(name: str, content: dict[str, Any]) -> list[Any]:
        return [{"name": name}] + [
            tree(key[:-1], value) if key.endswith("/") else value for key, value in content.items()
        ]

    header = {"progname": "scitq", "progver": __version__, "timestamp": int(time.time())}
    json.dump([1, 0, header, tree(uri, root)], output_file)


def ncdu_file(uri: str, path: Path) -> Path:
    """`ncdu` into the file ``path``; returns it."""
    with path.open("w", encoding="utf-8") as stream:
        ncdu(uri, stream)
    return path
