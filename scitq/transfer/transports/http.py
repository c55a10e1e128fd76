"""``http://`` and ``https://``: streamed downloads with the standard library.

Download only (an output on HTTP is refused at submit). A folder URI cannot be listed
over plain HTTP and is refused. The body is streamed to a temporary file; a body
shorter than its ``Content-Length`` is never a complete file.

A connection dropped mid-body is resumed (`RESUMES` times at most per attempt) where the
server accepts ranges (``Accept-Ranges: bytes``) and names a version of the file (a
strong ``ETag``, else ``Last-Modified``): ``Range: bytes=<received>-`` with ``If-Range``,
so that a changed file comes back whole (``200``) and the download starts over instead
of splicing two versions. A ``206`` must start where the partial file ends and agree on
the total size, and the file must end at the size announced. Without ranges the attempt
fails (retryable) and the retry starts from the beginning.
"""

from __future__ import annotations

import http.client
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO

from scitq.config import TransferSettings
from scitq.errors import TransferError
from scitq.transfer.disk import atomic_path
from scitq.transfer.registry import Progress, RemoteEntry
from scitq.transfer.uri import Uri
from scitq.version import __version__

_CHUNK = 256 * 1024
#: Resumes of one download after dropped connections (each must bring new bytes).
RESUMES = 5
#: What a dropped connection looks like while reading a body.
_DROPPED = (http.client.IncompleteRead, ConnectionError, TimeoutError, socket.timeout)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
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

    def _request(
        self, uri: Uri, method: str, headers: dict[str, str] | None = None
    ) -> urllib.request.Request:
        if uri.is_folder:
            raise TransferError(
                uri.text, "HTTP folders cannot be listed: name each file", retryable=False
            )
        return urllib.request.Request(
            uri.location, method=method,
            headers={"User-Agent": f"scitq/{__version__}", **(headers or {})},
        )  # fmt: skip

    def _open(
        self, uri: Uri, method: str, headers: dict[str, str] | None = None
    ) -> http.client.HTTPResponse:
        # one timeout for connect and each read: a stalled server ends the transfer
        timeout = max(self.settings.connect_timeout_seconds, self.settings.read_timeout_seconds)
        response: http.client.HTTPResponse = urllib.request.urlopen(
            self._request(uri, method, headers), timeout=timeout
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
            self._request(uri, "GET")  # a folder URI is refused before anything is written
            with atomic_path(dest_dir / _name(uri)) as temporary:
                return _Resumable(self, uri, progress).fetch(temporary)
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


class _Resumable:
    """One download, resumed with ranges after dropped connections."""

    def __init__(self, transport: HttpTransport, uri: Uri, progress: Progress | None) -> None:
        self.transport, self.uri, self.progress = transport, uri, progress
        self.size: int | None = None  # the whole file's, once known
        self.validator: str | None = None  # If-Range: a strong ETag or Last-Modified
        self.etag: str | None = None
        self.ranges = False
        self.have = 0

    def _fail(self, why: str, retryable: bool = True) -> TransferError:
        return TransferError(self.uri.text, why, retryable=retryable)

    def _start(self, response: http.client.HTTPResponse, stream: BinaryIO) -> None:
        """A whole body (200): the first one, or the file changed (or the server ignored
        the range): the partial file is dropped."""
        stream.seek(0)
        stream.truncate()
        self.have = 0
        length = response.headers.get("Content-Length")
        self.size = int(length) if length and length.isdigit() else None
        self.etag = response.headers.get("ETag")
        strong = self.etag if self.etag and not self.etag.startswith("W/") else None
        self.validator = strong or response.headers.get("Last-Modified")
        self.ranges = response.headers.get("Accept-Ranges", "").lower() == "bytes"

    def _resumed(self, response: http.client.HTTPResponse) -> None:
        """A 206 must continue the partial file of the same version."""
        found = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if found is None or int(found[1]) != self.have:
            raise self._fail(f"the server resumed at {found[1] if found else 'no offset'} "
                             f"instead of byte {self.have}")  # fmt: skip
        if found[3] != "*" and self.size is not None and int(found[3]) != self.size:
            raise self._fail(f"the file's size changed from {self.size} to {found[3]} bytes")
        etag = response.headers.get("ETag")
        if self.etag and etag and etag != self.etag:
            raise self._fail(f"the file changed during the download (ETag {etag})")

    def fetch(self, target: Path) -> int:
        resumes = 0
        with target.open("wb") as stream:
            while True:
                headers = {}
                if self.have and self.validator is not None:
                    headers = {"Range": f"bytes={self.have}-", "If-Range": self.validator}
                before = self.have
                try:
                    with self.transport._open(self.uri, "GET", headers) as response:
                        if headers and response.status == 206:
                            self._resumed(response)
                        else:
                            self._start(response, stream)
                        while chunk := response.read(_CHUNK):
                            stream.write(chunk)
                            self.have += len(chunk)
                            if self.progress is not None:
                                self.progress(len(chunk))
                    dropped: Exception | None = None
                except _DROPPED as exc:
                    dropped = exc
                if self.size is None and dropped is None:
                    return self.have  # no length announced: the end of the body is the end
                if self.size is not None and self.have == self.size:
                    return self.have
                if self.size is not None and self.have > self.size:
                    raise self._fail(f"the server sent {self.have} bytes, more than the "
                                     f"{self.size} it announced")  # fmt: skip
                short = f"connection closed after {self.have} of {self.size or '?'} bytes"
                if not self.ranges or self.validator is None:
                    raise self._fail(f"{short} (the server takes no ranges: not resumable)")
                if resumes >= RESUMES or (resumes and self.have == before):
                    raise self._fail(f"{short}, after {resumes} resumes")
                resumes += 1
                stream.flush()
