"""What a ``run+fastq``/``run+submitted`` URI asks for: its accession and options.

Read by the transport (`scitq.transfer.transports.ena.run`), the SRA route
(`scitq.transfer.transports.ena.sra`) and, at submit time, the scheme registry's syntax
check (`check_run_uri`), which must not load the transport.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scitq.errors import InvalidUri
from scitq.transfer.uri import Uri

#: A run accession: SRR (NCBI), ERR (EBI) or DRR (DDBJ), then digits.
RUN_ACCESSION = re.compile(r"[SED]RR[0-9]+")
_TRANSPORTS = ("https", "ftp")


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What a ``run+fastq``/``run+submitted`` URI asks for.

    Attributes:
        accession: the run accession (upper case, as ENA spells it).
        kind: ``fastq`` or ``submitted``.
        transports: the transports to try, in order.
        sra: convert the SRA object instead of using ENA's FASTQ files.
        filter_r1: keep read 1 only.
    """

    accession: str
    kind: str
    transports: tuple[str, ...]
    sra: bool = False
    filter_r1: bool = False


def parse_run_uri(uri: Uri) -> RunRequest:
    """Read the accession and options of a ``run+fastq``/``run+submitted`` URI.

    Raises:
        InvalidUri: a malformed accession, an unknown or contradictory option, an action
            that makes no sense; the message names the URI and the accession.
    """
    kind = {"run+fastq": "fastq", "run+submitted": "submitted"}.get(uri.scheme)
    if kind is None:
        raise InvalidUri(f"{uri.text!r} is not a run+fastq:// or run+submitted:// URI")
    accession = uri.rest.rstrip("/")
    if not RUN_ACCESSION.fullmatch(accession):
        raise InvalidUri(
            f"{accession!r} in {uri.text!r} is not a run accession "
            "(SRR, ERR or DRR followed by digits, e.g. ERR1234567)"
        )
    allowed = {"https", "ftp", "sra", "filter_r1"} if kind == "fastq" else {"https", "ftp"}
    for option in uri.options:
        if option not in allowed:
            hint = " (Aspera is not supported: use @https or @ftp)" if option == "aspera" else ""
            raise InvalidUri(
                f"unknown option @{option} for {uri.scheme} in {uri.text!r} "
                f"(known: {', '.join('@' + o for o in sorted(allowed))}){hint}"
            )
    chosen = tuple(t for t in _TRANSPORTS if t in uri.options)
    sra = "sra" in uri.options
    if len(chosen) > 1 or (sra and chosen):
        given = " and ".join("@" + o for o in (*chosen, *(["sra"] if sra else [])))
        raise InvalidUri(f"{given} contradict each other in {uri.text!r}: choose one")
    return RunRequest(
        accession=accession,
        kind=kind,
        transports=chosen or _TRANSPORTS,
        sra=sra,
        filter_r1="filter_r1" in uri.options,
    )


def check_run_uri(uri: Uri) -> None:
    """Syntax check for the scheme registry (`scitq.transfer.registry.SchemeInfo.check`)."""
    parse_run_uri(uri)
