"""Fetch one public archive file over HTTPS or FTP: verified, retried, written atomically.

Used by the ``run+fastq``/``run+submitted`` transports (`scitq.transfer.transports.ena.run`)
and the SRA route (`scitq.transfer.transports.ena.sra`). A file is streamed to a hidden
temporary name in the target folder while its MD5 is computed, checked against the size
and MD5 the archive published, and only then renamed to its final name: an interrupted
or corrupt download never looks complete.

Transient failures (HTTP 5xx/408/429, FTP 4xx replies, connection errors and timeouts)
are retried ``TransferSettings.retries`` times with exponential back-off; an MD5 or size
mismatch is retried once (the archive's copy may itself be bad). A missing file (HTTP
404, FTP 550) or a refused certificate is not retried.
"""

from __future__ import annotations

import ftplib
import hashlib
import http.client
import logging
import random
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from scitq.config import EnaSettings, TransferSettings
from scitq.transfer.disk import atomic_path

log = logging.getLogger(__name__)

#: Receives byte increments as a download progresses.
Progress = Callable[[int], None]

_CHUNK = 1 << 20
#: HTTP statuses worth trying again.
_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


class FetchFailure(Exception):
    """One attempt failed; ``kind`` says whether trying again can help.

    Kinds: ``transient`` (network, 5xx), ``mismatch`` (size or MD5), ``permanent``.
    Transports turn the final one into a `scitq.errors.TransferError`.
    """

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        #: the HTTP status, when the failure is one
        self.status = status


@dataclass(frozen=True, slots=True)
class Source:
    """A file to fetch: a full ``https://`` or ``ftp://`` URL and what to expect."""

    url: str
    name: str
    size: int | None = None
    md5: str | None = None


def ssl_context(settings: EnaSettings) -> ssl.SSLContext:
    """The system trust store, plus ``settings.ca_file`` when set (mirrors, tests)."""
    context = ssl.create_default_context()
    if settings.ca_file is not None:
        context.load_verify_locations(cafile=str(settings.ca_file))
    return context


def backoff_seconds(settings: TransferSettings, attempt: int) -> float:
    """The pause before retry ``attempt`` (0-based): exponential, capped, jittered."""
    ceiling = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2**attempt)
    return float(ceiling * random.uniform(0.5, 1.0))


def http_get(url: str, settings: TransferSettings, context: ssl.SSLContext) -> IO[bytes]:
    """Open ``url`` for reading; raise `FetchFailure` classified by cause."""
    request = urllib.request.Request(url, headers={"User-Agent": "scitq"})
    try:
        response: IO[bytes] = urllib.request.urlopen(
            request, timeout=settings.read_timeout_seconds, context=context
        )
    except urllib.error.HTTPError as exc:
        kind = "transient" if exc.code in _TRANSIENT_HTTP else "permanent"
        exc.close()
        raise FetchFailure(kind, f"HTTP {exc.code} {exc.reason} from {url}", exc.code) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise FetchFailure("permanent", f"{url}: {exc.reason.verify_message}") from None
        raise FetchFailure("transient", f"cannot reach {url}: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FetchFailure("transient", f"cannot reach {url}: {exc}") from None
    return response


def fetch_file(
    source: Source, dest_dir: Path, settings: TransferSettings, progress: Progress | None = None
) -> int:
    """Download ``source`` to ``dest_dir/<name>`` with retries; return its size.

    Raises:
        FetchFailure: the last attempt's failure, once retries are spent.
    """
    transient_left, mismatch_left, attempt = settings.retries, 1, 0
    while True:
        try:
            return _fetch_once(source, dest_dir, settings, progress)
        except FetchFailure as exc:
            if exc.kind == "transient" and transient_left > 0:
                transient_left -= 1
            elif exc.kind == "mismatch" and mismatch_left > 0:
                mismatch_left -= 1
            else:
                raise
            pause = backoff_seconds(settings, attempt)
            attempt += 1
            log.warning(
                "retrying %s in %.1f s: %s",
                source.name,
                pause,
                exc,
                extra={"file": source.name, "url": source.url, "attempt": attempt},
            )
            time.sleep(pause)


def _fetch_once(
    source: Source, dest_dir: Path, settings: TransferSettings, progress: Progress | None
) -> int:
    digest = hashlib.md5(usedforsecurity=False)
    written = 0
    # the temporary file is removed unless the block ends normally, checks included
    with atomic_path(dest_dir / source.name) as temporary, temporary.open("wb") as handle:

        def sink(chunk: bytes) -> None:
            nonlocal written
            handle.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            if progress is not None:
                progress(len(chunk))

        scheme = urlsplit(source.url).scheme
        if scheme == "ftp":
            _ftp_retrieve(source.url, settings, sink)
        elif scheme in ("http", "https"):
            with http_get(source.url, settings, ssl_context(settings.ena)) as response:
                try:
                    while chunk := response.read(_CHUNK):
                        sink(chunk)
                except (OSError, http.client.HTTPException) as exc:
                    raise FetchFailure("transient", f"{source.url}: {exc}") from None
        else:
            raise FetchFailure("permanent", f"unsupported URL {source.url!r}")
        if source.size is not None and written != source.size:
            raise FetchFailure(
                "mismatch", f"{source.name}: got {written} bytes, expected {source.size}"
            )
        if source.md5 is not None and digest.hexdigest() != source.md5.lower():
            raise FetchFailure(
                "mismatch",
                f"{source.name}: MD5 {digest.hexdigest()} does not match the published "
                f"{source.md5}",
            )
    log.info("fetched %s", source.name, extra={"file": source.name, "bytes": written})
    return written


def _ftp_retrieve(url: str, settings: TransferSettings, sink: Callable[[bytes], None]) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    ftp = ftplib.FTP(timeout=settings.read_timeout_seconds)
    try:
        ftp.connect(host, parts.port or 21, timeout=settings.connect_timeout_seconds)
        ftp.login()  # public archives are anonymous
        ftp.retrbinary(f"RETR {parts.path}", sink, blocksize=_CHUNK)
    except ftplib.error_perm as exc:
        ftp.close()
        raise FetchFailure("permanent", f"{url}: FTP {exc}") from None
    except (ftplib.error_temp, ftplib.error_reply, ftplib.error_proto) as exc:
        ftp.close()
        raise FetchFailure("transient", f"{url}: FTP {exc}") from None
    except (OSError, EOFError) as exc:
        ftp.close()
        raise FetchFailure(
            "transient", f"cannot reach {url}: {exc or type(exc).__name__}"
        ) from None
    except BaseException:
        ftp.close()  # aborted (deadline, cancel): do not wait for the server's reply
        raise
    try:
        ftp.quit()
    except (OSError, EOFError, ftplib.Error):
        ftp.close()
