"""What the agent calls: fetch one URI, stage a task's inputs, upload its outputs.

Everything is synchronous and thread-safe; the agent calls these through
``asyncio.to_thread``. Failures raise `scitq.errors.TransferError` carrying the URI,
the reason and the direction (``download`` / ``upload``, the failure class).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from scitq.config import TransferSettings
from scitq.errors import InvalidUri, TransferError
from scitq.transfer.actions import apply_actions
from scitq.transfer.disk import walk_files
from scitq.transfer.registry import Progress, scheme_info, transport_for
from scitq.transfer.retry import (
    EitherFlag,
    Interrupted,
    StopFlag,
    guarded_progress,
    item_timeout,
    with_retries,
)
from scitq.transfer.uri import Uri, check_subdir, parse_uri

log = logging.getLogger(__name__)

#: Prefix of the private directories downloads are assembled in.
STAGING_PREFIX = ".scitq-staging-"

T = TypeVar("T")


def as_uri(uri: Uri | str) -> Uri:
    """``uri`` parsed if it is text."""
    return uri if isinstance(uri, Uri) else parse_uri(uri)


def as_folder(uri: Uri) -> Uri:
    """``uri`` with a trailing ``/`` on its path (options and actions kept)."""
    if uri.is_folder:
        return uri
    head = "@".join((uri.scheme, *uri.options))
    actions = "".join(f"|{action}" for action in uri.actions)
    return parse_uri(f"{head}://{uri.rest}/{actions}")


def folder_if_missing(uri: Uri, error: TransferError, settings: TransferSettings) -> Uri:
    """The folder ``uri/`` when the file ``uri`` does not exist but that folder holds
    files, as scitq v1 (rclone) read ``s3://bucket/prefix``; else raises ``error``.

    Only for schemes that store folders (those accepting uploads), and only after a
    failure that retrying cannot fix (a missing object).
    """
    if uri.is_folder or error.retryable or not scheme_info(uri, settings).upload:
        raise error
    folder = as_folder(uri)
    try:
        found = next(iter(transport_for(folder, settings).list(folder, recursive=True)), None)
    except TransferError:
        raise error from None
    if found is None:
        raise error
    return folder


def remote_size(uri: Uri, settings: TransferSettings) -> int | None:
    """The bytes behind ``uri`` (a folder: all its files), or None when unknown."""
    try:
        return sum(entry.size for entry in transport_for(uri, settings).list(uri, recursive=True))
    except TransferError:
        return None  # the download itself reports the real problem


def _move_tree(source: Path, target: Path) -> None:
    """Move everything below ``source`` into ``target`` (one rename per file)."""
    for directory, subdirs, files in os.walk(source):
        relative = Path(directory).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in files + [d for d in subdirs if Path(directory, d).is_symlink()]:
            os.replace(Path(directory, name), target / relative / name)


def fetch(
    uri: Uri | str,
    dest_dir: Path,
    settings: TransferSettings,
    *,
    progress: Progress | None = None,
    deadline: float | None = None,
    stop: StopFlag | None = None,
) -> int:
    """Download ``uri`` into ``dest_dir`` once (no retry), actions applied.

    The data is assembled in a private directory inside ``dest_dir`` and moved into
    place (``dest_dir/<subdir>`` for ``|mv:subdir``) only when complete; on failure that
    directory is removed and nothing new appears in ``dest_dir``.

    Args:
        uri: what to download.
        dest_dir: where (created if needed).
        settings: transfer settings.
        progress: receives byte increments.
        deadline: a ``time.monotonic()`` value past which the transfer is abandoned.
        stop: abandon the transfer when set.

    Returns:
        The bytes downloaded (before any decompression).

    Raises:
        TransferError: naming the URI and the cause.
    """
    uri = as_uri(uri)
    transport = transport_for(uri, settings)
    if not uri.is_folder and not uri.path.strip("/") and scheme_info(uri, settings).upload:
        uri = as_folder(uri)  # s3://bucket, ftp://host: the root folder
    target = dest_dir / check_subdir(uri.subdir, uri.text) if uri.subdir else dest_dir
    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest_dir))
    try:
        guarded = guarded_progress(uri.text, "download", deadline, stop, progress)
        try:
            size = transport.download(uri, staging, guarded)
        except TransferError as error:
            folder = folder_if_missing(uri, error, settings)
            size = transport.download(folder, staging, guarded)
        apply_actions(staging, uri)
        _move_tree(staging, target)
        return size
    except OSError as exc:
        raise TransferError(uri.text, f"{exc.strerror or exc}: {exc.filename}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch_with_retries(
    uri: Uri | str,
    dest_dir: Path,
    settings: TransferSettings,
    *,
    progress: Progress | None = None,
    stop: StopFlag | None = None,
) -> int:
    """`fetch` with retries, back-off and a deadline that grows with the size."""
    uri = as_uri(uri)

    def attempt(_number: int) -> int:
        size = remote_size(uri, settings)
        deadline = None if size is None else time.monotonic() + item_timeout(size, settings)
        return fetch(uri, dest_dir, settings, progress=progress, deadline=deadline, stop=stop)

    return with_retries(attempt, settings, uri.text, stop)


def _run_all(
    items: Sequence[T],
    work: Callable[[T, StopFlag], int],
    parallel: int,
    cancel: StopFlag | None = None,
) -> int:
    """Run ``work`` on every item in parallel; on the first failure (or ``cancel``) stop
    the others.

    Raises:
        TransferError: the first real failure (not a cancellation it caused).
    """
    if not items:
        return 0
    failed = threading.Event()
    stop = EitherFlag(failed, cancel)
    failures: list[TransferError] = []

    def guarded(item: T) -> int:
        try:
            if stop.is_set():
                raise Interrupted(str(item))
            return work(item, stop)
        except TransferError as exc:
            failures.append(exc)
            failed.set()
            return 0

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items)))) as pool:
        total = sum(pool.map(guarded, items))
    if failures:
        real = [f for f in failures if not isinstance(f, Interrupted)]
        raise (real or failures)[0]
    return total


def stage_inputs(
    uris: Iterable[Uri | str],
    input_dir: Path,
    settings: TransferSettings,
    *,
    progress: Progress | None = None,
    cancel: StopFlag | None = None,
) -> int:
    """Download a task's inputs into ``input_dir``, in parallel, each retried.

    Args:
        uris: the task's input URIs (actions applied, ``mv:`` honoured).
        input_dir: the execution's input folder (created if needed).
        settings: parallelism, retries, back-off, timeouts and credentials.
        progress: receives byte increments (from several threads).
        cancel: a `threading.Event` (or alike); when set, transfers stop between chunks
            and `TransferError` (reason ``canceled``, not retryable) is raised.

    Returns:
        The bytes downloaded.

    Raises:
        TransferError: the first item that failed for good (``direction="download"``);
            the other downloads are stopped, and nothing partial keeps a final name.
        InvalidUri: a URI does not parse (refused at submit, so only for old rows).
    """
    parsed = [as_uri(uri) for uri in uris]

    def one(uri: Uri, stop: StopFlag) -> int:
        return fetch_with_retries(uri, input_dir, settings, progress=progress, stop=stop)

    return _run_all(parsed, one, settings.parallel, cancel)


def upload_outputs(
    output_dir: Path,
    output_uri: Uri | str,
    settings: TransferSettings,
    *,
    progress: Progress | None = None,
    cancel: StopFlag | None = None,
) -> int:
    """Upload every regular file below ``output_dir`` to the folder ``output_uri``.

    Relative paths are kept; symbolic links and special files are skipped. Files go in
    parallel, each retried with back-off and a deadline that grows with its size.
    ``progress`` and ``cancel`` work as in `stage_inputs`.

    Returns:
        The bytes uploaded (0 when ``output_dir`` is missing or empty).

    Raises:
        TransferError: ``direction="upload"``, naming the file's URI and the cause.
        InvalidUri: the URI cannot be an output (download-only scheme, actions).
    """
    uri = as_uri(output_uri)
    if uri.actions:
        raise InvalidUri(f"output {uri.text!r}: actions apply to inputs and resources only")
    if not uri.is_folder:
        uri = parse_uri(uri.text + "/")
    if not output_dir.is_dir():
        return 0
    files = list(walk_files(output_dir))
    transport = transport_for(uri, settings)

    def one(item: tuple[Path, str], stop: StopFlag) -> int:
        path, relative = item
        target = uri.child(relative)

        def attempt(_number: int) -> int:
            deadline = time.monotonic() + item_timeout(path.stat().st_size, settings)
            guarded = guarded_progress(target.text, "upload", deadline, stop, progress)
            return transport.upload(path, target, guarded)

        return with_retries(attempt, settings, target.text, stop)

    return _run_all(files, one, settings.parallel, cancel)


def clean_staging_leftovers(directory: Path) -> None:
    """Remove staging directories a killed process left in ``directory``."""
    for leftover in directory.glob(STAGING_PREFIX + "*"):
        with contextlib.suppress(OSError):
            shutil.rmtree(leftover)
