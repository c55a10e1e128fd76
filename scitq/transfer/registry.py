"""Transports: one per URI scheme, found through a registry.

A transport moves bytes between a URI and the local disk. It is synchronous (boto3
and ftputil are); asynchronous callers use ``asyncio.to_thread``. Every method may be
called from several threads at once.

The protocol (`Transport`):

* ``list(uri, recursive) -> Iterator[RemoteEntry]``: for a file URI, one entry whose
  ``path`` is the file's name; for a folder URI (ending in ``/``), the entries below it
  with ``path`` relative to the folder (``recursive=False``: direct children only,
  sub-folders reported with ``is_dir=True``). A missing file or folder raises
  `TransferError` (``retryable=False``).
* ``download(uri, dest_dir, progress) -> int``: a file URI is written to
  ``dest_dir/<name>``; a folder URI's content is written below ``dest_dir`` with its
  relative paths. Returns the bytes written. Each file is written under a temporary
  name and renamed when complete (`scitq.transfer.disk.atomic_path`), so nothing
  partial ever looks complete. Actions (``|gunzip``...) are NOT applied here: the
  caller applies them (`scitq.transfer.actions`).
* ``upload(src, uri, progress) -> int``: a file goes to ``uri`` (or ``uri/<name>``
  when ``uri`` is a folder); a directory is uploaded recursively below the folder
  ``uri``. Returns the bytes sent.
* ``progress`` is None or a callable receiving byte increments as they move.
* Failures raise `scitq.errors.TransferError` naming the URI and the cause, with
  ``retryable=False`` when trying again cannot help. Retries are the caller's job
  (`scitq.transfer.retry`), not the transport's.

A scheme that is no registered one is served by the rclone transport when it names a
remote of rclone's configuration (``[transfer.rclone]``): ``myremote://bucket/path``.

Adding a scheme: write a module with a factory ``(TransferSettings) -> Transport``
and add one line to `BUILTIN_SCHEMES` (``"run+fastq":
SchemeInfo("scitq.transfer.transports.ena.run:RunTransport", upload=False)``); or call
`register_scheme` at run time (tests, plugins). ``SchemeInfo.check`` validates the
syntax of a URI at submit time (`check_uri`). Both may be given as ``"module:attribute"``
strings, imported on first use: this module imports no transport (the transports import
it, for `RemoteEntry` and `Progress`), and checking a URI loads no transport library.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

from scitq.config import RcloneSettings, TransferSettings
from scitq.errors import InvalidUri
from scitq.transfer.uri import Uri

#: Receives byte increments as a transfer progresses.
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """One file (or, in non-recursive listings, sub-folder) found by `Transport.list`.

    Attributes:
        path: relative to the listed folder (``/``-separated), or the file's name.
        size: bytes (0 for folders).
        md5: hex MD5 when the store knows it cheaply (S3 single-part ETag), else None.
        mtime: modification time (seconds since the epoch) when known.
        is_dir: a sub-folder (only in non-recursive listings).
    """

    path: str
    size: int
    md5: str | None = None
    mtime: float | None = None
    is_dir: bool = False


@runtime_checkable
class Transport(Protocol):
    """What a scheme implements (see the module docstring for the contract)."""

    def list(self, uri: Uri, recursive: bool = False) -> Iterator[RemoteEntry]: ...

    def download(self, uri: Uri, dest_dir: Path, progress: Progress | None = None) -> int: ...

    def upload(self, src: Path, uri: Uri, progress: Progress | None = None) -> int: ...


#: Builds a transport for some settings.
TransportFactory = Callable[[TransferSettings], Transport]
#: Checks the syntax of a parsed URI of one scheme (raises InvalidUri).
UriCheck = Callable[[Uri], None]


def _needs_authority(what: str) -> Callable[[Uri], None]:
    def check(uri: Uri) -> None:
        if not uri.authority:
            raise InvalidUri(f"{uri.scheme} URI {uri.text!r} names no {what}")

    return check


def _check_file(uri: Uri) -> None:
    if not uri.rest.strip("/") and uri.rest != "/":
        raise InvalidUri(f"file URI {uri.text!r} names no path")
    if not uri.rest.startswith("/"):
        # file://data/x would be relative to wherever the agent runs
        raise InvalidUri(
            f"file URI {uri.text!r} must name an absolute path: file:///{uri.rest} (three slashes)"
        )


#: What botocore accepts as a bucket name (S3 itself wants 3 to 63 characters of a-z,
#: 0-9, "." and "-"; other stores accept more, so only what can never work is refused).
_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,255}")


def _check_s3(uri: Uri) -> None:
    _needs_authority("bucket (s3://bucket/key)")(uri)
    if uri.options:
        raise InvalidUri(f"s3 takes no @options: {uri.text!r}")
    if not _BUCKET.fullmatch(uri.authority):
        raise InvalidUri(
            f"s3 URI {uri.text!r}: {uri.authority!r} is not a bucket name (letters, digits, "
            "'.', '-' and '_' only; S3 wants 3 to 63 of a-z, 0-9, '.' and '-')"
        )
    if "/" not in uri.rest:
        raise InvalidUri(
            f"s3 URI {uri.text!r} names a bucket but no key: s3://{uri.authority}/KEY for an "
            f"object, s3://{uri.authority}/ for the whole bucket"
        )


def _check_ftp(uri: Uri) -> None:
    _needs_authority("host")(uri)
    if "/" not in uri.rest:
        raise InvalidUri(
            f"ftp URI {uri.text!r} names a host but no path: ftp://{uri.authority}/PATH "
            f"for a file, ftp://{uri.authority}/ for the top folder"
        )


@dataclass(frozen=True, slots=True)
class SchemeInfo:
    """A registered scheme.

    Attributes:
        factory: a factory, or ``"module:attribute"`` naming one (imported on first use).
        upload: whether the scheme accepts uploads (can be an output).
        check: validates a parsed URI's syntax (raise InvalidUri), or
            ``"module:attribute"`` naming such a function; None: no check.
    """

    factory: TransportFactory | str
    upload: bool = True
    check: UriCheck | str | None = None


#: run+fastq and run+submitted: the accession and options (loads no transport).
_RUN_CHECK = "scitq.transfer.transports.ena.request:check_run_uri"

BUILTIN_SCHEMES: dict[str, SchemeInfo] = {
    "file": SchemeInfo("scitq.transfer.transports.file:LocalTransport", check=_check_file),
    "s3": SchemeInfo("scitq.transfer.transports.s3:S3Transport", check=_check_s3),
    "ftp": SchemeInfo("scitq.transfer.transports.ftp:FtpTransport", check=_check_ftp),
    "http": SchemeInfo(
        "scitq.transfer.transports.http:HttpTransport", upload=False, check=_needs_authority("host")
    ),
    "https": SchemeInfo(
        "scitq.transfer.transports.http:HttpTransport", upload=False, check=_needs_authority("host")
    ),
    "run+fastq": SchemeInfo(
        "scitq.transfer.transports.ena.run:RunTransport", upload=False, check=_RUN_CHECK
    ),
    "run+submitted": SchemeInfo(
        "scitq.transfer.transports.ena.run:RunTransport", upload=False, check=_RUN_CHECK
    ),
}

#: Schemes that name no built-in transport are looked up among rclone's remotes.
RCLONE = SchemeInfo("scitq.transfer.transports.rclone:RcloneTransport")
#: How long a listing of rclone's remotes is reused (the file's change renews it too).
_REMOTES_TTL_SECONDS = 30.0

_registry: dict[str, SchemeInfo] = dict(BUILTIN_SCHEMES)
_remotes: dict[tuple[str, Path | None], tuple[float, float | None, frozenset[str]]] = {}
_instances: dict[tuple[str, TransferSettings], Transport] = {}
_lock = threading.Lock()


def register_scheme(
    name: str,
    factory: TransportFactory | str,
    *,
    upload: bool = True,
    check: UriCheck | str | None = None,
) -> None:
    """Register (or replace) the transport of a scheme.

    Args:
        name: the scheme, lower case (``run+fastq``).
        factory: ``(TransferSettings) -> Transport``, or ``"module:attribute"``.
        upload: whether the scheme can be an output.
        check: syntax check run by `check_uri` (raise InvalidUri), or
            ``"module:attribute"``.
    """
    with _lock:
        _registry[name.lower()] = SchemeInfo(factory, upload, check)
        for key in [key for key in _instances if key[0] == name.lower()]:
            del _instances[key]


def known_schemes() -> tuple[str, ...]:
    """The registered scheme names, sorted."""
    return tuple(sorted(_registry))


def rclone_config_options(config: Path | None) -> list[str]:
    """rclone's options naming its configuration file (none: rclone's default)."""
    return ["--config", str(config)] if config is not None else []


def rclone_remotes(settings: RcloneSettings) -> frozenset[str]:
    """The remote names (lower case) of rclone's configuration (``rclone listremotes``),
    reused for a while; empty when rclone is missing or its file cannot be read."""
    key = (settings.command, settings.config)
    try:
        mtime = settings.config.stat().st_mtime if settings.config is not None else None
    except OSError:
        mtime = None
    now = time.monotonic()
    with _lock:
        cached = _remotes.get(key)
    if cached is not None and cached[1] == mtime and now - cached[0] < _REMOTES_TTL_SECONDS:
        return cached[2]
    try:
        done = subprocess.run(
            [settings.command, *rclone_config_options(settings.config), "listremotes"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        names = frozenset(
            line.strip().rstrip(":").lower()
            for line in (done.stdout.splitlines() if done.returncode == 0 else [])
            if line.strip()
        )
    except (OSError, subprocess.SubprocessError):
        names = frozenset()
    with _lock:
        _remotes[key] = (now, mtime, names)
    return names


def scheme_info(uri: Uri, settings: TransferSettings | None = None) -> SchemeInfo:
    """The registration of ``uri``'s scheme: a registered one, else the rclone transport
    when the scheme names a remote of rclone's configuration (``settings.rclone``).

    Raises:
        InvalidUri: the scheme is unknown (the message lists the known ones).
    """
    info = _registry.get(uri.scheme)
    if info is not None:
        return info
    rclone = (settings or TransferSettings()).rclone
    found = rclone_remotes(rclone)
    if uri.scheme in found:
        return RCLONE
    where = f"rclone's configuration {rclone.config}" if rclone.config else "rclone's configuration"
    remotes = ", ".join(sorted(found)) if found else "none, or rclone is not installed"
    raise InvalidUri(
        f"unknown scheme {uri.scheme!r} in {uri.text!r} (known: {', '.join(known_schemes())}; "
        f"remotes of {where}: {remotes})"
    )


def _resolve(name: str) -> Any:
    """The object ``"module:attribute"`` names, importing the module."""
    module_name, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def check_uri(uri: Uri, settings: TransferSettings | None = None) -> None:
    """Run the syntax check of ``uri``'s scheme, if it has one.

    Raises:
        InvalidUri: the scheme is unknown, or its check refuses the URI.
    """
    check = scheme_info(uri, settings).check
    if isinstance(check, str):
        check = cast(UriCheck, _resolve(check))
    if check is not None:
        check(uri)


def transport_for(uri: Uri, settings: TransferSettings) -> Transport:
    """The transport for ``uri``'s scheme (one shared instance per scheme and settings).

    Raises:
        InvalidUri: the scheme is unknown.
    """
    info = scheme_info(uri, settings)
    key = (uri.scheme, settings)
    with _lock:
        transport = _instances.get(key)
        if transport is None:
            factory = info.factory
            if isinstance(factory, str):
                factory = cast(TransportFactory, _resolve(factory))
            transport = factory(settings)
            _instances[key] = transport
    return transport
