"""``http://`` and ``https://``: streamed downloads with the standard library.

Download only (an output on HTTP is refused at submit). A folder URI cannot be listed
over plain HTTP and is refused. The body is streamed to a temporary file; a body
shorter than its ``Content-Length`` is an error (retried), never a complete file.
"""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

from scitq.config import TransferSettings
from scitq.errors import TransferError
from scitq.transfer.disk import atomic_path
from scitq.transfer.registry import Progress, RemoteEntry
from scitq.transfer.uri import Uri
from scitq.version import __version__

_CHUNK = 256 * 1024
#: Statuses that trying again cannot fix.
_PERMANENT = {400, 401, 403, 404, 405, 410, 414, 451}


def translate(exc: Exception, uri: Uri, direction: str = "download") -> TransferError:
    """A `TransferError` for a urllib/socket exception."""
    if isinstance(exc, TransferError):
        return exc
    if isinstance(exc, urllib.error.HTTPError):
        return TransferError(
            uri.text,
            f"HTTP {exc.code} {exc.reason}",
            direction=direction,
            retryable=exc.code not in _PERMANENT,
        )
    if isinstance(exc, urllib.error.URLError):
        return TransferError(
            uri.text, f"cannot reach the server: {exc.reason}", direction=direction
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return TransferError(
            uri.text, "the server stopped answering (timeout)", direction=direction
        )
    return TransferError(uri.text, f"{type(exc).__name__}: {exc}", direction=direction)


class HttpTransport:
    """The ``http`` and ``https`` schemes."""

    def __init__(self, settings: TransferSettings) -> None:
        self.settings = settings

    def _request(self, uri: Uri, method: str) -> urllib.request.Request:
        if uri.is_folder:
            raise TransferError(
                uri.text, "HTTP folders cannot be listed: name each file", retryable=False
            )
        return urllib.request.Request(
            uri.location, method=method, headers={"User-Agent": f"scitq/{__version__}"}
        )

    def _open(self, uri: Uri, method: str) -> http.client.HTTPResponse:
        # one timeout for connect and each read: a stalled server ends the transfer
        timeout = max(self.settings.connect_timeout_seconds, self.settings.read_timeout_seconds)
        response: http.client.HTTPResponse = urllib.request.urlopen(
            self._request(uri, method), timeout=timeout
        )
        return response

    def list(self, uri: Uri, recursive: bool = False) -> Iterator[RemoteEntry]:
        try:
            with self._open(uri, "HEAD") as response:
                length = response.headers.get("Content-Length")
                modified = response.headers.get("Last-Modified")
        except Exception as exc:
            raise translate(exc, uri, "list") from exc
        mtime = parsedate_to_datetime(modified).timestamp() if modified else None
        yield RemoteEntry(_name(uri), int(length) if length else 0, None, mtime)

    def download(self, uri: Uri, dest_dir: Path, progress: Progress | None = None) -> int:
        try:
            with self._open(uri, "GET") as response, atomic_path(dest_dir / _name(uri)) as temp:
                expected = response.headers.get("Content-Length")
                total = 0
                with temp.open("wb") as stream:
                    while chunk := response.read(_CHUNK):
                        stream.write(chunk)
                        total += len(chunk)
                        if progress is not None:
                            progress(len(chunk))
                if expected is not None and total != int(expected):
                    raise TransferError(
                        uri.text, f"connection closed after {total} of {expected} bytes"
                    )
                return total
        except Exception as exc:
            raise translate(exc, uri) from exc

    def upload(self, src: Path, uri: Uri, progress: Progress | None = None) -> int:
        raise TransferError(
            uri.text, "http(s) is download-only", direction="upload", retryable=False
        )


def _name(uri: Uri) -> str:
    name = urllib.parse.unquote(urllib.parse.urlsplit(uri.location).path.rsplit("/", 1)[-1])
    if not name or name in (".", ".."):
        raise TransferError(uri.text, "the URL names no file", retryable=False)
    return name
