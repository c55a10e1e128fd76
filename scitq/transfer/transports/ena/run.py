"""``run+fastq://<run>`` and ``run+submitted://<run>``: public sequencing runs from ENA.

``run+fastq://ERR1234567`` downloads the FASTQ files ENA publishes for a run (SRR, ERR
or DRR accession), ``run+submitted://ERR1234567`` the files as the submitter sent them.
The ENA portal API's ``filereport`` endpoint lists them (tab-separated, with a header
line; the file columns are ``;``-separated lists, locations written without a scheme
as ``ftp.sra.ebi.ac.uk/vol1/...``); every file is then fetched in parallel, over HTTPS
by default with FTP as the fallback, and checked against the published size and MD5
(`scitq.transfer.transports.ena.fetch`).

Options (they combine, in any order):

* ``@https`` / ``@ftp``: use only that transport.
* ``@filter_r1`` (run+fastq): keep only read 1 (``*_1.fastq.gz``; a single-end run's
  only file).
* ``@sra`` (run+fastq): fetch the SRA object from NCBI and convert it with sra-tools'
  ``fasterq-dump`` (`scitq.transfer.transports.ena.sra`), for runs ENA has no FASTQ for.

Addresses come from `scitq.config.EnaSettings` (``[transfer.ena]``). Both schemes are
read-only: uploads are refused. See docs/transfer-ena.md.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from scitq.config import EnaSettings, TransferSettings
from scitq.errors import TransferError
from scitq.transfer.registry import RemoteEntry
from scitq.transfer.transports.ena import sra
from scitq.transfer.transports.ena.fetch import (
    FetchFailure,
    Progress,
    Source,
    backoff_seconds,
    fetch_file,
    http_get,
    ssl_context,
)
from scitq.transfer.transports.ena.request import RunRequest, parse_run_uri
from scitq.transfer.uri import Uri

log = logging.getLogger(__name__)

#: The filereport columns read (ENA answers them in this order, run_accession first).
REPORT_FIELDS = (
    "run_accession",
    "fastq_ftp",
    "fastq_md5",
    "fastq_bytes",
    "submitted_ftp",
    "submitted_md5",
    "submitted_bytes",
)
#: Read 1 / read 2 of a paired run, as ENA names them (ERR123_1.fastq.gz).
_READ_SUFFIX = re.compile(r"_([12])\.(?:fastq|fq)(?:\.gz|\.bz2)?$")


@dataclass(frozen=True, slots=True)
class RunFile:
    """One file of a run as ENA reports it."""

    name: str
    location: str  # ftp.sra.ebi.ac.uk/vol1/... (no scheme)
    size: int | None
    md5: str | None


def report_url(settings: EnaSettings, accession: str) -> str:
    """The filereport query for ``accession``."""
    query = urlencode(
        {
            "accession": accession,
            "result": "read_run",
            "fields": ",".join(REPORT_FIELDS),
            "format": "tsv",
        }
    )
    return f"{settings.portal_url.rstrip('/')}/filereport?{query}"


def fetch_report(uri: Uri, accession: str, settings: TransferSettings) -> dict[str, str]:
    """The filereport row of ``accession`` (column name -> value), with retries.

    Raises:
        TransferError: ENA does not know the run (204, 400, 404 or no matching row; not
            retryable), or cannot be reached after the retries (retryable).
    """
    url = report_url(settings.ena, accession)
    context = ssl_context(settings.ena)
    attempt = 0
    while True:
        try:
            with http_get(url, settings, context) as response:
                body = response.read().decode("utf-8", errors="replace")
            break
        except FetchFailure as exc:
            if exc.status in (400, 404):
                raise TransferError(
                    uri.text, f"ENA does not know run {accession} ({exc})", retryable=False
                ) from None
            if exc.kind != "transient" or attempt >= settings.retries:
                raise TransferError(
                    uri.text,
                    f"cannot get the file report of run {accession} from ENA: {exc}",
                    retryable=exc.kind == "transient",
                ) from None
        except OSError as exc:  # the connection broke while reading the report
            if attempt >= settings.retries:
                raise TransferError(
                    uri.text, f"cannot read the ENA file report of run {accession}: {exc}"
                ) from None
        pause = backoff_seconds(settings, attempt)
        attempt += 1
        log.warning(
            "retrying the ENA file report of %s in %.1f s",
            accession,
            pause,
            extra={"accession": accession, "attempt": attempt},
        )
        time.sleep(pause)
    return _report_row(uri, accession, body)


def _report_row(uri: Uri, accession: str, body: str) -> dict[str, str]:
    lines = [line for line in body.splitlines() if line.strip()]
    if len(lines) >= 2:
        header = lines[0].split("\t")
        for line in lines[1:]:
            values = line.split("\t")
            row = dict(zip(header, values + [""] * (len(header) - len(values)), strict=True))
            if row.get("run_accession") == accession:
                return row
    raise TransferError(
        uri.text, f"ENA has no run {accession} (empty file report)", retryable=False
    )


def run_files(uri: Uri, request: RunRequest, row: dict[str, str]) -> list[RunFile]:
    """The files of ``request.kind`` listed in a report row (filtered by ``@filter_r1``).

    Raises:
        TransferError: the run has no such files, or the row is inconsistent.
    """
    locations = _split(row.get(f"{request.kind}_ftp", ""))
    md5s = _split(row.get(f"{request.kind}_md5", ""))
    sizes = _split(row.get(f"{request.kind}_bytes", ""))
    what = "FASTQ" if request.kind == "fastq" else "submitted"
    if not locations:
        hint = (
            " (try run+fastq@sra:// to convert its SRA object)" if request.kind == "fastq" else ""
        )
        raise TransferError(
            uri.text, f"run {request.accession} has no {what} files at ENA{hint}", retryable=False
        )
    if len(md5s) != len(locations) or len(sizes) not in (0, len(locations)):
        raise TransferError(
            uri.text,
            f"the ENA file report of run {request.accession} lists {len(locations)} {what} "
            f"files but {len(md5s)} MD5s and {len(sizes)} sizes",
            retryable=False,
        )
    files = []
    for index, location in enumerate(locations):
        size = sizes[index] if sizes else ""
        name = location.rstrip("/").rsplit("/", 1)[-1]
        files.append(RunFile(name, location, int(size) if size.isdigit() else None, md5s[index]))
    if request.filter_r1:
        files = keep_read1(files)
        if not files:
            raise TransferError(
                uri.text, f"run {request.accession} has no read 1 file", retryable=False
            )
    return files


def keep_read1(files: list[RunFile]) -> list[RunFile]:
    """Read 1 of a paired run (``*_1.fastq.gz``), or a single-end run's files."""
    reads = [_READ_SUFFIX.search(item.name) for item in files]
    first = [item for item, read in zip(files, reads, strict=True) if read and read[1] == "1"]
    if first:
        return first
    return [item for item, read in zip(files, reads, strict=True) if read is None]


def file_url(location: str, transport: str, settings: EnaSettings) -> str:
    """The URL of a reported location over ``transport`` (``https`` or ``ftp``).

    ``https_base``/``ftp_base`` replace the reported host (mirrors, tests).
    """
    # ENA writes no scheme; a mirror's report may
    rest = location.split("://", 1)[1] if "://" in location else location
    host, _, path = rest.partition("/")
    base = settings.https_base if transport == "https" else settings.ftp_base
    return f"{(base or f'{transport}://{host}').rstrip('/')}/{path}"


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(";")] if value.strip() else []


class RunTransport:
    """The transport of ``run+fastq`` and ``run+submitted`` (see the module docstring)."""

    #: A report is reused this long: staging lists a URI (for its size) right before
    #: downloading it, and ENA need not answer the same question twice.
    REPORT_TTL_SECONDS = 60.0

    def __init__(self, settings: TransferSettings) -> None:
        self.settings = settings
        self._reports: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def _report(self, uri: Uri, accession: str) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            cached = self._reports.get(accession)
        if cached is not None and now - cached[0] < self.REPORT_TTL_SECONDS:
            return cached[1]
        row = fetch_report(uri, accession, self.settings)
        with self._lock:
            self._reports[accession] = (now, row)
        return row

    def list(self, uri: Uri, recursive: bool = False) -> Iterator[RemoteEntry]:
        """The run's files with their sizes and MD5s (``@sra``: the SRA object)."""
        request = parse_run_uri(uri)
        if request.sra:
            yield sra.describe_sra_object(uri, request.accession, self.settings)
            return
        row = self._report(uri, request.accession)
        for item in run_files(uri, request, row):
            yield RemoteEntry(path=item.name, size=item.size or 0, md5=item.md5)

    def download(self, uri: Uri, dest_dir: Path, progress: Progress | None = None) -> int:
        """Fetch the run's files into ``dest_dir`` in parallel; return the bytes written.

        Raises:
            TransferError: naming the accession and the cause (see `fetch_report`,
                `run_files`); files already verified stay, nothing partial remains.
        """
        request = parse_run_uri(uri)
        dest_dir.mkdir(parents=True, exist_ok=True)
        if request.sra:
            return sra.download_sra_run(uri, request, dest_dir, self.settings, progress)
        files = run_files(uri, request, self._report(uri, request.accession))
        report = _locked(progress)
        workers = max(1, min(self.settings.parallel, len(files)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ena") as pool:
            futures = [
                pool.submit(self._fetch, uri, request, item, dest_dir, report) for item in files
            ]
        failures: list[TransferError] = []
        total = 0
        for future in futures:
            error = future.exception()
            if error is None:
                total += future.result()
            elif isinstance(error, TransferError):
                failures.append(error)
            else:
                raise error
        for failure in failures:
            if type(failure) is not TransferError:
                raise failure  # a cancellation or deadline from the caller: pass it on
        if failures:
            raise TransferError(
                uri.text,
                "; ".join(failure.reason for failure in failures),
                retryable=all(failure.retryable for failure in failures),
            )
        log.info(
            "downloaded run %s",
            request.accession,
            extra={"uri": uri.text, "files": len(files), "bytes": total},
        )
        return total

    def _fetch(
        self,
        uri: Uri,
        request: RunRequest,
        item: RunFile,
        dest_dir: Path,
        progress: Progress | None,
    ) -> int:
        causes: list[str] = []
        retryable = False
        for transport in request.transports:
            url = file_url(item.location, transport, self.settings.ena)
            try:
                return fetch_file(
                    Source(url, item.name, item.size, item.md5), dest_dir, self.settings, progress
                )
            except FetchFailure as exc:
                causes.append(f"{transport}: {exc}")
                retryable = retryable or exc.kind == "transient"
                log.warning(
                    "%s of run %s failed over %s",
                    item.name,
                    request.accession,
                    transport,
                    extra={"accession": request.accession, "file": item.name, "cause": str(exc)},
                )
        raise TransferError(
            uri.text,
            f"run {request.accession}, {item.name}: {'; '.join(causes)}",
            retryable=retryable,
        )

    def upload(self, src: Path, uri: Uri, progress: Progress | None = None) -> int:
        """Refused: ENA runs are read-only."""
        raise TransferError(
            uri.text,
            f"{uri.scheme} is a read-only public archive and cannot be an output",
            direction="upload",
            retryable=False,
        )


def _locked(progress: Progress | None) -> Progress | None:
    """``progress`` made safe to call from the download threads."""
    if progress is None:
        return None
    lock = threading.Lock()

    def report(increment: int) -> None:
        with lock:
            progress(increment)

    return report
