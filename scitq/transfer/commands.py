"""What ``scitq fetch`` and `scitq.fetch` do with URIs: list, copy, sync and delete.

A bare path (no ``scheme://``) is a local path (`to_uri`). A URI without its trailing
``/`` that names no object but a folder holding files is that folder, as scitq v1
(rclone) read it: ``s3://bucket/runs`` lists ``s3://bucket/runs/`` (`resolve`); a
bucket or host alone (``s3://bucket``) is its root folder.

Errors are `TransferError` (``list of s3://b/x failed: not found ...``) or `InvalidUri`,
one line each.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from scitq.config import TransferSettings
from scitq.errors import InvalidUri, TransferError
from scitq.transfer import validate_uri
from scitq.transfer.registry import RemoteEntry, scheme_info, transport_for
from scitq.transfer.retry import with_retries
from scitq.transfer.staging import as_folder, fetch_with_retries, folder_if_missing
from scitq.transfer.transports.file import file_md5
from scitq.transfer.uri import Uri, parse_uri

#: Receives byte increments (a progress bar's advance).
Advance = Callable[[int], None]
T = TypeVar("T")


@runtime_checkable
class Deleting(Protocol):
    """A transport that can delete (``file``, ``s3``, ``ftp``)."""

    def delete(self, uri: Uri) -> tuple[str, ...]: ...


def _ignore(_count: int) -> None:
    return None


def to_uri(text: str, settings: TransferSettings | None = None) -> Uri:
    """A URI, or a local path turned into a ``file://`` URI (a directory gets a ``/``).

    Raises:
        InvalidUri: naming the URI and what is wrong.
    """
    if "://" not in text:
        path = Path(text).expanduser().absolute()
        folder = text.endswith("/") or path.is_dir()
        return parse_uri(f"file://{path}{'/' if folder and str(path) != '/' else ''}")
    uri = parse_uri(text)
    if not uri.is_folder and not uri.path.strip("/") and scheme_info(uri, settings).upload:
        uri = as_folder(uri)  # s3://bucket, ftp://host: the root folder
    return validate_uri(uri.text, "input", settings)


def local_path(uri: Uri) -> Path | None:
    """The local path of a ``file://`` URI, None for other schemes."""
    return Path(uri.rest) if uri.scheme == "file" else None


def resolve(uri: Uri, settings: TransferSettings, direction: str = "list") -> Uri:
    """``uri``, or the folder ``uri/`` when no file ``uri`` exists but that folder does.

    Raises:
        TransferError: neither exists (the file's error, e.g. ``not found``, as a failure
            of ``direction``: ``list``, ``download``...).
    """
    if uri.is_folder:
        return uri
    try:
        list(transport_for(uri, settings).list(uri))
    except TransferError as error:
        try:
            return folder_if_missing(uri, error, settings)
        except TransferError as missing:
            raise TransferError(
                missing.uri, missing.reason, direction=direction, retryable=missing.retryable
            ) from None
    return uri


def list_entries(
    uri: Uri, settings: TransferSettings, recursive: bool = False
) -> tuple[Uri, list[RemoteEntry]]:
    """The resolved URI and its entries (a file: one entry, its name)."""
    resolved = resolve(uri, settings)
    return resolved, list(transport_for(resolved, settings).list(resolved, recursive))


def _upload(src: Path, dst: Uri, settings: TransferSettings, advance: Advance) -> int:
    if dst.actions:
        raise InvalidUri(f"{dst.text!r}: actions apply to downloads only")
    if not scheme_info(dst, settings).upload:
        raise InvalidUri(f"{dst.text!r}: scheme {dst.scheme} is download-only")
    transport = transport_for(dst, settings)
    return with_retries(lambda _n: transport.upload(src, dst, advance), settings, dst.text)


def _single_file(folder: Path, src: Uri) -> Path:
    produced = [p for p in folder.rglob("*") if p.is_file()]
    if len(produced) != 1:
        raise InvalidUri(f"{src.text} gives {len(produced)} files: copy it into a folder (DST/)")
    return produced[0]


def copy_uri(src: Uri, dst: Uri, settings: TransferSettings, advance: Advance | None = None) -> int:
    """Copy ``src`` to ``dst``; returns the bytes moved (downloaded, or uploaded).

    A file goes to the file ``dst``, or into ``dst`` when it is a folder (``dst/`` or a
    local directory); a folder is copied recursively into the folder ``dst``. Actions
    of ``src`` apply. Between two remote URIs the data passes through a local temporary
    folder.
    """
    advance = advance or _ignore
    source = local_path(src)
    if source is not None and not src.actions:
        if not source.exists():
            raise TransferError(src.text, "no such file or directory", retryable=False)
        if local_path(dst) is None:
            return _upload(source, dst, settings, advance)
    src = resolve(src, settings, "download") if source is None else src
    target = local_path(dst)
    if target is not None:
        if src.is_folder or dst.is_folder or target.is_dir():
            return fetch_with_retries(src, target, settings, progress=advance)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".scitq-fetch-", dir=target.parent) as tmp:
            size = fetch_with_retries(src, Path(tmp), settings, progress=advance)
            os.replace(_single_file(Path(tmp), src), target)
        return size
    with tempfile.TemporaryDirectory(prefix="scitq-fetch-") as tmp:
        fetch_with_retries(src, Path(tmp), settings, progress=advance)
        if not src.is_folder and not dst.is_folder:
            produced = [p for p in Path(tmp).rglob("*") if p.is_file()]
            if len(produced) == 1:
                return _upload(produced[0], dst, settings, advance)
        return _upload(Path(tmp), as_folder(dst), settings, advance)


def _same(src: Uri, dst: Uri, a: RemoteEntry, b: RemoteEntry | None, by_size: bool) -> bool:
    """Whether ``b`` (at the destination) already matches ``a``."""
    if b is None or a.size != b.size:
        return False
    if by_size:
        return True
    md5_a, md5_b = a.md5, b.md5
    if (md5_a is None) != (md5_b is None):
        # compute the missing local MD5 only when the other side has one and sizes agree
        source, target = local_path(src), local_path(dst)
        if md5_a is None and source is not None:
            md5_a = file_md5(source / a.path if src.is_folder else source)
        elif md5_b is None and target is not None:
            md5_b = file_md5(target / b.path)
    if md5_a is not None and md5_b is not None:
        return md5_a == md5_b
    if a.mtime is not None and b.mtime is not None:
        return b.mtime >= a.mtime
    return True


def matches(relative: str, include: Sequence[str]) -> bool:
    """Whether a relative path matches one of the ``include`` patterns (all when none):
    a pattern matches the whole relative path or the file's name, as rclone's do."""
    if not include:
        return True
    name = posixpath.basename(relative)
    return any(fnmatch.fnmatchcase(relative, p) or fnmatch.fnmatchcase(name, p) for p in include)


@dataclass
class SyncResult:
    """What `sync_folders` did: the relative paths copied, their bytes, the files skipped."""

    copied: list[str] = field(default_factory=list)
    bytes: int = 0
    up_to_date: int = 0


def sync_folders(
    src: Uri,
    dst: Uri,
    settings: TransferSettings,
    *,
    include: Sequence[str] = (),
    parallel: int | None = None,
    by_size: bool = False,
    advance: Advance | None = None,
) -> SyncResult:
    """Copy the files of ``src`` that are missing or differ in the folder ``dst``.

    Files are compared by size, then (unless ``by_size``) by MD5 when both sides know
    it, else by modification time. Nothing is deleted at ``dst``. ``src`` may be one
    file (copied into ``dst``).

    Raises:
        TransferError: the first file that could not be copied, after the others.
    """
    if src.actions:
        raise InvalidUri(f"{src.text!r}: sync takes no actions")
    src = resolve(src, settings)
    dst = as_folder(dst)
    wanted = [e for e in transport_for(src, settings).list(src, True) if matches(e.path, include)]
    try:
        _resolved, found = list_entries(dst, settings, recursive=True)
        present = {e.path: e for e in found}
    except TransferError as exc:
        if exc.retryable:
            raise
        present = {}  # the destination does not exist yet
    todo = [e for e in wanted if not _same(src, dst, e, present.get(e.path), by_size)]
    result = SyncResult(up_to_date=len(wanted) - len(todo))
    lock = threading.Lock()

    def one(entry: RemoteEntry) -> None:
        source = src.child(entry.path) if src.is_folder else src
        target = local_path(dst)
        if target is not None:
            directory = target / posixpath.dirname(entry.path)
            moved = fetch_with_retries(source, directory, settings, progress=advance)
        else:
            moved = copy_uri(source, dst.child(entry.path), settings, advance)
        with lock:
            result.copied.append(entry.path)
            result.bytes += moved

    _each(todo, one, parallel or settings.parallel)
    result.copied.sort()
    return result


def _each(items: Iterable[T], work: Callable[[T], None], parallel: int) -> None:
    """Run ``work`` on every item; raise the first failure once all have been tried."""
    failures: list[Exception] = []

    def guarded(item: T) -> None:
        try:
            work(item)
        except (TransferError, InvalidUri) as exc:
            failures.append(exc)

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(guarded, items))
    if failures:
        raise failures[0]


def delete_uri(
    uri: Uri,
    settings: TransferSettings,
    *,
    include: Sequence[str] = (),
    dry_run: bool = False,
    parallel: int | None = None,
) -> list[str]:
    """Delete the file ``uri``, or the files below the folder ``uri`` that match
    ``include`` (all when empty); returns the URIs deleted (with ``dry_run``: that would
    be). Folders themselves are kept where the store has them (local disks, FTP).

    Raises:
        InvalidUri: the scheme cannot delete (http, run+...), or actions are given.
        TransferError: ``delete of ... failed: ...``.
    """
    if uri.actions:
        raise InvalidUri(f"{uri.text!r}: actions apply to downloads only")
    transport = transport_for(uri, settings)
    if not isinstance(transport, Deleting):
        raise InvalidUri(f"{uri.text!r}: scheme {uri.scheme} cannot delete")
    resolved, entries = list_entries(uri, settings, recursive=True)
    if not resolved.is_folder:
        targets = [resolved] if matches(resolved.name, include) else []
    else:
        targets = [resolved.child(e.path) for e in entries if matches(e.path, include)]
    if dry_run:
        return [t.text for t in targets]
    if resolved.is_folder and not include:
        return [resolved.child(path).text for path in transport.delete(resolved)]
    deleted: list[str] = []
    lock = threading.Lock()

    def one(target: Uri) -> None:
        transport.delete(target)
        with lock:
            deleted.append(target.text)

    _each(targets, one, parallel or settings.parallel)
    return sorted(deleted)
