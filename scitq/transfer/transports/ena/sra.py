"""``run+fastq@sra://<run>``: FASTQ files converted from the run's NCBI SRA object.

For runs ENA serves no FASTQ for (or when NCBI is closer): the SRA object is fetched
over HTTPS from ``EnaSettings.sra_url`` (``<sra_url>/<acc>/<acc>``, NCBI's open-data
bucket by default, as scitq v1 did), converted by sra-tools' ``fasterq-dump`` in a
hidden work folder inside the target, then each FASTQ is gzipped into the target under
its final name (``SRR123_1.fastq.gz``...) through a temporary name. sra-tools is not a
Python package: without ``fasterq-dump`` on the PATH the download fails at once,
saying what to install.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from scitq.config import TransferSettings
from scitq.errors import TransferError
from scitq.transfer.disk import atomic_path
from scitq.transfer.registry import RemoteEntry
from scitq.transfer.transports.ena.fetch import (
    FetchFailure,
    Progress,
    Source,
    fetch_file,
    ssl_context,
)
from scitq.transfer.transports.ena.request import RunRequest
from scitq.transfer.uri import Uri

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
#: How long fasterq-dump may take, per GiB of SRA object (and at least 10 minutes).
_CONVERT_SECONDS_PER_GIB = 1800.0


def sra_object_url(settings: TransferSettings, accession: str) -> str:
    """Where the SRA object of ``accession`` is fetched."""
    return f"{settings.ena.sra_url.rstrip('/')}/{accession}/{accession}"


def fasterq_dump_command(uri: Uri, settings: TransferSettings) -> str:
    """The full path of ``fasterq-dump``.

    Raises:
        TransferError: sra-tools is not installed (not retryable), saying what to do.
    """
    command = settings.ena.fasterq_dump
    found = shutil.which(command)
    if found is None:
        raise TransferError(
            uri.text,
            f"@sra needs sra-tools, and {command!r} was not found on the PATH: install "
            "sra-tools (conda install -c bioconda sra-tools, or apt install sra-toolkit) "
            "or set [transfer.ena] fasterq_dump; or drop @sra to download ENA's FASTQ files",
            retryable=False,
        )
    return found


def describe_sra_object(uri: Uri, accession: str, settings: TransferSettings) -> RemoteEntry:
    """The SRA object as a listing entry (its size from a HEAD request; no MD5).

    Raises:
        TransferError: the object does not exist or the service cannot be reached.
    """
    url = sra_object_url(settings, accession)
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "scitq"})
    try:
        with urllib.request.urlopen(
            request, timeout=settings.read_timeout_seconds, context=ssl_context(settings.ena)
        ) as response:
            size = int(response.headers.get("Content-Length") or 0)
    except urllib.error.HTTPError as exc:
        raise TransferError(
            uri.text,
            f"no SRA object for run {accession} (HTTP {exc.code} from {url})",
            retryable=exc.code >= 500,
        ) from None
    except OSError as exc:
        raise TransferError(uri.text, f"cannot reach {url}: {exc}") from None
    return RemoteEntry(path=accession, size=size)


def download_sra_run(
    uri: Uri,
    request: RunRequest,
    dest_dir: Path,
    settings: TransferSettings,
    progress: Progress | None = None,
) -> int:
    """Fetch and convert the SRA object of ``request.accession``; return bytes written.

    Raises:
        TransferError: naming the run and the cause (sra-tools missing, no SRA object,
            unreachable service, conversion failed, no read 1 with ``@filter_r1``).
    """
    command = fasterq_dump_command(uri, settings)
    accession = request.accession
    work = Path(tempfile.mkdtemp(prefix=f".{accession}.sra-", dir=dest_dir))
    try:
        url = sra_object_url(settings, accession)
        try:
            size = fetch_file(Source(url, f"{accession}.sra"), work, settings, progress)
        except FetchFailure as exc:
            missing = exc.status in (403, 404)
            cause = f"no SRA object for run {accession}" if missing else f"run {accession}"
            raise TransferError(
                uri.text, f"{cause}: {exc}", retryable=exc.kind == "transient"
            ) from None
        fastqs = _convert(uri, command, work / f"{accession}.sra", size, accession)
        if request.filter_r1:
            fastqs = [path for path in fastqs if not path.name.endswith("_2.fastq")]
            paired = [path for path in fastqs if path.name.endswith("_1.fastq")]
            fastqs = paired or fastqs
        if not fastqs:
            raise TransferError(
                uri.text, f"fasterq-dump made no FASTQ file for run {accession}", retryable=False
            )
        total = 0
        for fastq in fastqs:
            total += _gzip_into(fastq, dest_dir / f"{fastq.name}.gz")
        log.info(
            "converted run %s from SRA",
            accession,
            extra={"uri": uri.text, "files": len(fastqs), "bytes": total},
        )
        return total
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _convert(uri: Uri, command: str, sra_file: Path, size: int, accession: str) -> list[Path]:
    """Run fasterq-dump on ``sra_file``; return the FASTQ files, named after the run."""
    out = sra_file.parent / "fastq"
    out.mkdir()
    timeout = max(600.0, size / 2**30 * _CONVERT_SECONDS_PER_GIB)
    argv = [command, "--split-3", "--outdir", str(out), "--temp", str(sra_file.parent)]
    try:
        finished = subprocess.run(
            [*argv, str(sra_file)], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise TransferError(
            uri.text, f"fasterq-dump did not finish run {accession} within {timeout:.0f} s"
        ) from None
    except OSError as exc:
        raise TransferError(uri.text, f"cannot run {command}: {exc}", retryable=False) from None
    if finished.returncode != 0:
        lines = [line for line in (finished.stderr or finished.stdout).splitlines() if line]
        detail = lines[-1] if lines else "no message"
        raise TransferError(
            uri.text,
            f"fasterq-dump failed on run {accession} (exit {finished.returncode}): {detail}",
        )
    results = []
    for path in sorted(out.glob("*.fastq")):
        # fasterq-dump names its outputs after the file it read (ACC.sra_1.fastq or
        # ACC_1.fastq depending on the version): name them after the run
        suffix = path.name.removesuffix(".fastq").rsplit(".sra", 1)[-1]
        read = suffix[suffix.rfind("_") :] if suffix.rfind("_") >= 0 else ""
        target = path.with_name(f"{accession}{read}.fastq")
        path.rename(target)
        results.append(target)
    return sorted(results)


def _gzip_into(source: Path, target: Path) -> int:
    """Compress ``source`` into ``target`` (through a temporary name); return its size."""
    with atomic_path(target) as temporary:
        with source.open("rb") as raw, gzip.open(temporary, "wb", compresslevel=6) as packed:
            shutil.copyfileobj(raw, packed, _CHUNK)
        size = temporary.stat().st_size
    source.unlink()
    return size
