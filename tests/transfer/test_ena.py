"""run+fastq:// and run+submitted:// against a local stand-in for ENA (HTTPS and FTP).

The stand-in (tests/fixtures/ena_standin.py) answers the ENA portal filereport API in
ENA's format and serves small gzipped FASTQ files over HTTPS and FTP; the transports
reach it through `EnaSettings`, exactly as they would reach a mirror.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from scitq.config import EnaSettings, TransferSettings, load_settings
from scitq.errors import ConfigError, InvalidUri, TransferError
from scitq.transfer import parse_uri, transport_for, validate_uri
from tests.fixtures.ena_standin import EnaStandIn


def settings_for(standin: EnaStandIn, **ena: object) -> TransferSettings:
    """Transfer settings pointed at the stand-in, with short back-off."""
    values: dict[str, object] = {
        "portal_url": standin.portal_url,
        "sra_url": standin.sra_url,
        "https_base": standin.https_base,
        "ftp_base": standin.ftp_base,
        "ca_file": standin.ca_file,
        **ena,
    }
    return TransferSettings(
        retries=3,
        backoff_base_seconds=0.01,
        backoff_max_seconds=0.05,
        ena=EnaSettings(**values),  # type: ignore[arg-type]
    )


def download(standin: EnaStandIn, text: str, dest: Path, **ena: object) -> int:
    uri = validate_uri(text)
    return transport_for(uri, settings_for(standin, **ena)).download(uri, dest)


def names(folder: Path) -> list[str]:
    """Everything in ``folder``, hidden (partial) files included."""
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_paired_run_over_https_by_default(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    run = ena_standin.add_run("ERR1000001")
    seen: list[int] = []
    uri = validate_uri("run+fastq://ERR1000001")
    transport = transport_for(uri, settings_for(ena_standin))
    written = transport.download(uri, tmp_path / "in", seen.append)

    assert names(tmp_path / "in") == ["ERR1000001_1.fastq.gz", "ERR1000001_2.fastq.gz"]
    for item in run.fastq:
        assert (tmp_path / "in" / item.location.rsplit("/", 1)[1]).read_bytes() == item.content
    assert written == sum(len(item.content) for item in run.fastq) == sum(seen)
    assert ena_standin.transports_used() == {"https"}
    read2 = gzip.decompress((tmp_path / "in" / "ERR1000001_2.fastq.gz").read_bytes())
    assert read2.startswith(b"@ERR1000001.1 1/2\n")


def test_single_end_run(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    ena_standin.add_run("SRR2000002", reads=(0,))
    download(ena_standin, "run+fastq://SRR2000002", tmp_path)
    assert names(tmp_path) == ["SRR2000002.fastq.gz"]


@pytest.mark.parametrize(
    ("reads", "kept"),
    [
        ((1, 2), ["DRR3000003_1.fastq.gz"]),
        ((0,), ["DRR3000003.fastq.gz"]),
        ((0, 1, 2), ["DRR3000003_1.fastq.gz"]),  # ENA's unpaired reads file is dropped too
    ],
)
def test_filter_r1_keeps_read_1(
    ena_standin: EnaStandIn, tmp_path: Path, reads: tuple[int, ...], kept: list[str]
) -> None:
    ena_standin.add_run("DRR3000003", reads=reads)
    download(ena_standin, "run+fastq@filter_r1://DRR3000003", tmp_path)
    assert names(tmp_path) == kept


def test_ftp_option_uses_ftp_only(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    run = ena_standin.add_run("ERR4000004")
    download(ena_standin, "run+fastq@ftp@filter_r1://ERR4000004", tmp_path)
    assert names(tmp_path) == ["ERR4000004_1.fastq.gz"]
    assert (tmp_path / "ERR4000004_1.fastq.gz").read_bytes() == run.fastq[0].content
    assert ena_standin.transports_used() == {"ftp"}


def test_https_option_does_not_fall_back_to_ftp(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    run = ena_standin.add_run("ERR4100041")
    ena_standin.missing.add("/" + run.fastq[1].path)
    with pytest.raises(TransferError) as caught:
        download(ena_standin, "run+fastq@https://ERR4100041", tmp_path)
    assert "ERR4100041_2.fastq.gz" in str(caught.value)
    assert "HTTP 404" in caught.value.reason
    assert not caught.value.retryable
    assert ena_standin.ftp_log == []
    # the file that could be fetched is complete; the missing one left nothing behind
    assert names(tmp_path) == ["ERR4100041_1.fastq.gz"]


def test_default_falls_back_to_ftp(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    run = ena_standin.add_run("ERR4200042")
    ena_standin.missing.add("/" + run.fastq[1].path)
    download(ena_standin, "run+fastq://ERR4200042", tmp_path)
    assert (tmp_path / "ERR4200042_2.fastq.gz").read_bytes() == run.fastq[1].content
    assert ena_standin.transports_used() == {"https", "ftp"}
    assert len(ena_standin.ftp_log) == 1


def test_md5_mismatch_fails_and_leaves_nothing(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    run = ena_standin.add_run("SRR5000005", reads=(0,))
    run.fastq[0].reported_md5 = "0" * 32
    with pytest.raises(TransferError) as caught:
        download(ena_standin, "run+fastq://SRR5000005", tmp_path)
    message = str(caught.value)
    assert "run+fastq://SRR5000005" in message
    assert "SRR5000005" in caught.value.reason
    assert "does not match the published " + "0" * 32 in message
    assert caught.value.direction == "download"
    assert names(tmp_path) == []
    # one retry per transport after the first mismatch: 2 over HTTPS, 2 over FTP
    fetches = [path for path in ena_standin.http_requests if path.startswith("/vol1/")]
    assert len(fetches) == 2
    assert len(ena_standin.ftp_log) == 2


def test_corrupt_download_is_retried(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    run = ena_standin.add_run("ERR5100051")
    ena_standin.corrupt_next["/" + run.fastq[0].path] = 1
    download(ena_standin, "run+fastq@https://ERR5100051", tmp_path)
    assert (tmp_path / "ERR5100051_1.fastq.gz").read_bytes() == run.fastq[0].content
    fetches = [path for path in ena_standin.http_requests if path == "/" + run.fastq[0].path]
    assert len(fetches) == 2


@pytest.mark.parametrize("status", [400, 404])
def test_unknown_accession_rejected_by_ena(
    ena_standin: EnaStandIn, tmp_path: Path, status: int
) -> None:
    ena_standin.report_status["ERR9999999"] = status
    with pytest.raises(TransferError) as caught:
        download(ena_standin, "run+fastq://ERR9999999", tmp_path / "in")
    assert "ENA does not know run ERR9999999" in caught.value.reason
    assert f"HTTP {status}" in caught.value.reason
    assert not caught.value.retryable
    assert names(tmp_path / "in") == []


def test_accession_without_report(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    with pytest.raises(TransferError) as caught:
        download(ena_standin, "run+submitted://SRR8888888", tmp_path)
    assert caught.value.reason == "ENA has no run SRR8888888 (empty file report)"
    assert not caught.value.retryable


def test_run_without_fastq(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    ena_standin.add_run("ERR6000006", reads=())
    with pytest.raises(TransferError) as caught:
        download(ena_standin, "run+fastq://ERR6000006", tmp_path)
    assert "run ERR6000006 has no FASTQ files at ENA" in caught.value.reason
    assert "@sra" in caught.value.reason


def test_service_failing_twice_then_answering(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    run = ena_standin.add_run("ERR7000007")
    ena_standin.fail_next["/filereport"] = 2
    ena_standin.fail_next["/" + run.fastq[1].path] = 2
    download(ena_standin, "run+fastq@https://ERR7000007", tmp_path)
    assert names(tmp_path) == ["ERR7000007_1.fastq.gz", "ERR7000007_2.fastq.gz"]
    assert ena_standin.http_requests.count("/ena/portal/api/filereport") == 3
    assert ena_standin.http_requests.count("/" + run.fastq[1].path) == 3


def test_service_failing_beyond_the_retries(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    ena_standin.add_run("ERR7100071")
    ena_standin.fail_next["/filereport"] = 10
    with pytest.raises(TransferError) as caught:
        download(ena_standin, "run+fastq://ERR7100071", tmp_path)
    assert "cannot get the file report of run ERR7100071" in caught.value.reason
    assert "HTTP 503" in caught.value.reason
    assert caught.value.retryable  # a later attempt of the task may succeed
    assert ena_standin.http_requests.count("/ena/portal/api/filereport") == 4  # 1 + 3 retries


def test_unreachable_service(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransferError) as caught:
        download(
            ena_standin,
            "run+fastq://ERR7200072",
            tmp_path,
            portal_url=f"https://127.0.0.1:{port}/ena/portal/api",
        )
    assert "cannot get the file report of run ERR7200072" in caught.value.reason
    assert "cannot reach" in caught.value.reason
    assert caught.value.retryable


def test_untrusted_certificate_is_refused(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    ena_standin.add_run("ERR7300073")
    with pytest.raises(TransferError) as caught:
        download(ena_standin, "run+fastq://ERR7300073", tmp_path, ca_file=None)
    assert "certificate" in caught.value.reason
    assert not caught.value.retryable


def test_list_gives_names_sizes_and_md5s(ena_standin: EnaStandIn) -> None:
    run = ena_standin.add_run("ERR8000008")
    uri = validate_uri("run+fastq://ERR8000008")
    entries = list(transport_for(uri, settings_for(ena_standin)).list(uri))
    assert [(e.path, e.size, e.md5) for e in entries] == [
        (item.location.rsplit("/", 1)[1], len(item.content), item.md5) for item in run.fastq
    ]
    uri = validate_uri("run+fastq@filter_r1://ERR8000008")
    assert [e.path for e in transport_for(uri, settings_for(ena_standin)).list(uri)] == [
        "ERR8000008_1.fastq.gz"
    ]


def test_submitted_files(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    run = ena_standin.add_run("ERR8100081", submitted=True)
    uri = validate_uri("run+submitted@ftp://ERR8100081")
    transport = transport_for(uri, settings_for(ena_standin))
    listed = {entry.path: entry.md5 for entry in transport.list(uri)}
    assert listed == {"sample.bam": run.submitted[0].md5, "sample_R1.fq.gz": run.submitted[1].md5}
    transport.download(uri, tmp_path)
    assert (tmp_path / "sample.bam").read_bytes() == run.submitted[0].content
    assert (tmp_path / "sample_R1.fq.gz").read_bytes() == run.submitted[1].content
    assert names(tmp_path) == ["sample.bam", "sample_R1.fq.gz"]
    assert ena_standin.transports_used() == {"ftp"}


def test_submitted_md5_is_checked(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    run = ena_standin.add_run("ERR8200082", submitted=True)
    run.submitted[0].reported_md5 = "f" * 32
    with pytest.raises(TransferError) as caught:
        download(ena_standin, "run+submitted@https://ERR8200082", tmp_path)
    assert "sample.bam: MD5" in caught.value.reason
    assert names(tmp_path) == ["sample_R1.fq.gz"]


def test_upload_is_refused(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    uri = parse_uri("run+fastq://ERR8300083")
    with pytest.raises(TransferError) as caught:
        transport_for(uri, settings_for(ena_standin)).upload(tmp_path, uri)
    assert caught.value.direction == "upload"
    assert "read-only" in caught.value.reason
    with pytest.raises(InvalidUri, match="download-only"):
        validate_uri("run+fastq://ERR8300083", "output")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run+fastq://XRR123", "'XRR123' in 'run+fastq://XRR123' is not a run accession"),
        ("run+fastq://ERR12a", "'ERR12a'"),
        ("run+fastq://err123", "'err123'"),
        ("run+fastq://ERR123/x.fastq.gz", "'ERR123/x.fastq.gz'"),
        ("run+submitted://PRJEB1234", "'PRJEB1234'"),
        ("run+fastq@aspera://ERR123", "Aspera is not supported"),
        ("run+fastq@bogus://ERR123", "unknown option @bogus"),
        ("run+submitted@filter_r1://ERR123", "unknown option @filter_r1 for run+submitted"),
        ("run+fastq@ftp@https://ERR123", "@https and @ftp contradict each other"),
        ("run+fastq@sra@ftp://ERR123", "@ftp and @sra contradict each other"),
    ],
)
def test_malformed_uris_are_refused_at_submit(text: str, message: str) -> None:
    with pytest.raises(InvalidUri, match=message.replace("+", r"\+").replace("@", "@")):
        validate_uri(text)


def test_options_combine() -> None:
    uri = validate_uri("run+fastq@sra@filter_r1://SRR0000001")
    assert uri.options == ("sra", "filter_r1")


def test_sra_without_sra_tools(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    ena_standin.sra_objects["SRR9100091"] = b"not really an SRA object"
    with pytest.raises(TransferError) as caught:
        download(
            ena_standin,
            "run+fastq@sra://SRR9100091",
            tmp_path,
            fasterq_dump="fasterq-dump-not-installed",
        )
    assert "install sra-tools" in caught.value.reason
    assert "'fasterq-dump-not-installed' was not found" in caught.value.reason
    assert not caught.value.retryable
    assert names(tmp_path) == []
    assert ena_standin.http_requests == []  # nothing fetched before the check


def _converter_standin(folder: Path) -> Path:
    """A stand-in for fasterq-dump (sra-tools is not installed here): it writes the two
    FASTQ files of a paired run, named as fasterq-dump names them, from the object's bytes.
    """
    script = folder / "fasterq-dump-standin"
    script.write_text(
        "#!/bin/sh\n"
        'while [ "$1" != "" ]; do case "$1" in --outdir) out="$2"; shift 2;; '
        '--temp|--split-3) [ "$1" = --temp ] && shift; shift;; *) obj="$1"; shift;; esac; done\n'
        'grep -q SRA "$obj" || { echo "err: invalid SRA object $obj" >&2; exit 3; }\n'
        'name=$(basename "$obj")\n'
        'printf "@r1\\nACGT\\n+\\nIIII\\n" > "$out/${name}_1.fastq"\n'
        'printf "@r2\\nTGCA\\n+\\nIIII\\n" > "$out/${name}_2.fastq"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_sra_route_converts_and_filters(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    converter = _converter_standin(tmp_path)
    ena_standin.sra_objects["SRR9200092"] = b"SRA object bytes"
    dest = tmp_path / "in"
    download(ena_standin, "run+fastq@sra@filter_r1://SRR9200092", dest, fasterq_dump=str(converter))
    assert names(dest) == ["SRR9200092_1.fastq.gz"]
    assert gzip.decompress((dest / "SRR9200092_1.fastq.gz").read_bytes()) == b"@r1\nACGT\n+\nIIII\n"
    assert ena_standin.http_requests == ["/sra/SRR9200092/SRR9200092"]

    download(ena_standin, "run+fastq@sra://SRR9200092", dest, fasterq_dump=str(converter))
    assert names(dest) == ["SRR9200092_1.fastq.gz", "SRR9200092_2.fastq.gz"]


def test_sra_conversion_failure_and_missing_object(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    converter = _converter_standin(tmp_path)
    ena_standin.sra_objects["SRR9300093"] = b"garbage"
    dest = tmp_path / "in"
    with pytest.raises(TransferError) as caught:
        download(ena_standin, "run+fastq@sra://SRR9300093", dest, fasterq_dump=str(converter))
    assert "fasterq-dump failed on run SRR9300093 (exit 3): err: invalid SRA object" in str(
        caught.value
    )
    assert names(dest) == []  # the work folder is gone too
    with pytest.raises(TransferError) as caught:
        download(ena_standin, "run+fastq@sra://SRR9300094", dest, fasterq_dump=str(converter))
    assert "no SRA object for run SRR9300094" in caught.value.reason
    assert "HTTP 404" in caught.value.reason
    assert names(dest) == []


@pytest.mark.skipif(
    not any(
        os.access(Path(p) / "fasterq-dump", os.X_OK) for p in os.environ["PATH"].split(os.pathsep)
    ),
    reason="sra-tools (fasterq-dump) is not installed; CI does not need it",
)
def test_real_fasterq_dump_reports_a_bad_object(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    version = subprocess.run(["fasterq-dump", "--version"], capture_output=True, check=False)
    assert version.returncode == 0
    ena_standin.sra_objects["SRR9400094"] = b"this is not an SRA object"
    with pytest.raises(TransferError, match="fasterq-dump failed on run SRR9400094"):
        download(ena_standin, "run+fastq@sra://SRR9400094", tmp_path)
    assert names(tmp_path) == []


def test_settings_from_environment_and_file(tmp_path: Path) -> None:
    path = tmp_path / "scitq.toml"
    path.write_text(
        '[transfer.ena]\nportal_url = "https://mirror.example.org/ena/portal/api"\n'
        'ftp_base = "ftp://mirror.example.org"\nca_file = "~/ca.pem"\n'
    )
    env = {"SCITQ_CONFIG": str(path), "SCITQ_SRA_URL": "https://sra.example.org/sra"}
    ena = load_settings(env).transfer.ena
    assert ena.portal_url == "https://mirror.example.org/ena/portal/api"
    assert ena.ftp_base == "ftp://mirror.example.org"
    assert ena.sra_url == "https://sra.example.org/sra"
    assert ena.ca_file == Path("~/ca.pem").expanduser()
    assert ena.https_base is None
    assert load_settings({}).transfer.ena == EnaSettings()
    with pytest.raises(ConfigError, match="portal_url must be a URL"):
        load_settings({"SCITQ_ENA_PORTAL_URL": "www.ebi.ac.uk"})


def test_staged_like_any_input(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    from scitq.transfer.staging import fetch_with_retries

    run = ena_standin.add_run("ERR9500095")
    ena_standin.fail_next["/" + run.fastq[0].path] = 1
    settings = settings_for(ena_standin)
    fetch_with_retries("run+fastq@filter_r1://ERR9500095|gunzip|mv:reads", tmp_path, settings)
    assert names(tmp_path) == ["reads"]
    assert names(tmp_path / "reads") == ["ERR9500095_1.fastq"]
    content = (tmp_path / "reads" / "ERR9500095_1.fastq").read_bytes()
    assert content == gzip.decompress(run.fastq[0].content)
    # staging lists the URI (for its size) and downloads it: one report serves both
    assert ena_standin.http_requests.count("/ena/portal/api/filereport") == 1


def _scitq(standin: EnaStandIn, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m scitq ARGS`` configured for the stand-in by environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env.update(
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        SCITQ_ENA_PORTAL_URL=standin.portal_url,
        SCITQ_ENA_HTTPS_BASE=standin.https_base,
        SCITQ_ENA_FTP_BASE=standin.ftp_base,
        SCITQ_ENA_CA_FILE=str(standin.ca_file),
        SCITQ_TRANSFER_RETRIES="1",
        SCITQ_TRANSFER_BACKOFF_BASE_SECONDS="0.01",
    )
    return subprocess.run(
        [sys.executable, "-m", "scitq", "fetch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_scitq_fetch_list_and_copy(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    run = ena_standin.add_run("ERR9600096")
    listed = _scitq(ena_standin, "list", "run+fastq://ERR9600096")
    assert listed.returncode == 0, listed.stderr
    for item in run.fastq:
        line = next(x for x in listed.stdout.splitlines() if item.location.split("/")[-1] in x)
        assert str(len(item.content)) in line
        assert item.md5 in line

    as_json = _scitq(ena_standin, "list", "--json", "run+fastq@filter_r1://ERR9600096")
    assert json.loads(as_json.stdout) == [
        {
            "path": "ERR9600096_1.fastq.gz",
            "size": len(run.fastq[0].content),
            "md5": run.fastq[0].md5,
        }
    ]

    copied = _scitq(ena_standin, "copy", "-q", "run+fastq@ftp://ERR9600096", f"{tmp_path}/reads/")
    assert copied.returncode == 0, copied.stderr
    assert names(tmp_path / "reads") == ["ERR9600096_1.fastq.gz", "ERR9600096_2.fastq.gz"]
    assert (tmp_path / "reads" / "ERR9600096_2.fastq.gz").read_bytes() == run.fastq[1].content


def test_scitq_fetch_errors_are_one_line(ena_standin: EnaStandIn, tmp_path: Path) -> None:
    missing = _scitq(ena_standin, "copy", "-q", "run+fastq://ERR9700097", f"{tmp_path}/")
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines() == [
        "scitq: error: download of run+fastq://ERR9700097 failed: "
        "ENA has no run ERR9700097 (empty file report)"
    ]
    requests = len(ena_standin.http_requests)
    malformed = _scitq(ena_standin, "list", "run+fastq://ERX123")
    assert malformed.returncode == 2
    assert "'ERX123' in 'run+fastq://ERX123' is not a run accession" in malformed.stderr
    assert len(ena_standin.http_requests) == requests  # refused before any request
