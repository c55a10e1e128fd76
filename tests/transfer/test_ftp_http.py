"""ftp:// against pyftpdlib, http(s):// against http.server."""

from __future__ import annotations

from pathlib import Path

import pytest

from scitq.config import FtpSettings
from scitq.errors import TransferError
from scitq.transfer import parse_uri, stage_inputs, transport_for, upload_outputs
from tests.fixtures.servers import (
    FTP_PASSWORD,
    FTP_USER,
    FtpServer,
    HttpServer,
    fast_settings,
    write_random,
)


def test_ftp_anonymous_download_file_and_folder(
    ftp_server: FtpServer, ftp_dir: Path, tmp_path: Path
) -> None:
    data = write_random(ftp_dir / "reads.fq", 5000, seed=4)
    write_random(ftp_dir / "db" / "part1", 100, seed=5)
    write_random(ftp_dir / "db" / "deep" / "part2", 200, seed=6)
    settings = fast_settings(tmp_path)
    base = ftp_server.url(f"/{ftp_dir.name}")
    got = stage_inputs([f"{base}/reads.fq", f"{base}/db/|mv:db"], tmp_path / "in", settings)
    assert got == 5300
    assert (tmp_path / "in" / "reads.fq").read_bytes() == data
    assert (tmp_path / "in" / "db" / "deep" / "part2").stat().st_size == 200
    listed = list(transport_for(parse_uri(base + "/"), settings).list(parse_uri(base + "/"), True))
    assert sorted((e.path, e.size) for e in listed) == [
        ("db/deep/part2", 200),
        ("db/part1", 100),
        ("reads.fq", 5000),
    ]


def test_ftp_upload_with_configured_user(
    ftp_server: FtpServer, ftp_dir: Path, tmp_path: Path
) -> None:
    settings = fast_settings(
        tmp_path, ftp=FtpSettings(user=FTP_USER, password=FTP_PASSWORD, netrc=None)
    )
    out = tmp_path / "out"
    write_random(out / "a.txt", 10, seed=7)
    write_random(out / "x" / "b.txt", 20, seed=8)
    sent = upload_outputs(out, ftp_server.url(f"/{ftp_dir.name}/results/"), settings)
    assert sent == 30
    assert (ftp_dir / "results" / "x" / "b.txt").read_bytes() == (out / "x" / "b.txt").read_bytes()
    assert sorted(p.name for p in (ftp_dir / "results").iterdir()) == ["a.txt", "x"]


def test_ftp_netrc_credentials(ftp_server: FtpServer, ftp_dir: Path, tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {FTP_USER} password {FTP_PASSWORD}\n")
    netrc.chmod(0o600)
    settings = fast_settings(tmp_path, ftp=FtpSettings(netrc=netrc))
    source = tmp_path / "up.txt"
    source.write_text("hello")
    uri = parse_uri(ftp_server.url(f"/{ftp_dir.name}/up.txt", user=FTP_USER))
    assert transport_for(uri, settings).upload(source, uri) == 5
    assert (ftp_dir / "up.txt").read_text() == "hello"


def test_ftp_anonymous_cannot_upload_and_wrong_password_is_refused(
    ftp_server: FtpServer, ftp_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    write_random(out / "a.txt", 10)
    with pytest.raises(TransferError) as caught:
        upload_outputs(out, ftp_server.url(f"/{ftp_dir.name}/"), fast_settings(tmp_path))
    assert caught.value.direction == "upload" and not caught.value.retryable
    assert not list(ftp_dir.iterdir())  # nothing partial left behind
    wrong = fast_settings(tmp_path, ftp=FtpSettings(user=FTP_USER, password="wrong", netrc=None))
    with pytest.raises(TransferError, match="FTP login refused") as refused:
        stage_inputs([ftp_server.url(f"/{ftp_dir.name}/a.txt")], tmp_path / "in", wrong)
    assert "wrong" not in str(refused.value)  # the password never shows
    assert "password" not in refused.value.uri


def test_ftp_missing_file_and_unreachable(
    ftp_server: FtpServer, ftp_dir: Path, tmp_path: Path, unreachable_port: int
) -> None:
    settings = fast_settings(tmp_path, connect_timeout_seconds=1.0)
    with pytest.raises(TransferError) as caught:
        stage_inputs([ftp_server.url(f"/{ftp_dir.name}/missing.txt")], tmp_path / "in", settings)
    assert not caught.value.retryable
    assert "missing.txt" in caught.value.uri
    with pytest.raises(TransferError) as down:
        stage_inputs([f"ftp://127.0.0.1:{unreachable_port}/x.txt"], tmp_path / "in", settings)
    assert down.value.retryable
    assert list((tmp_path / "in").iterdir()) == []


def test_http_download_and_errors(
    http_server: HttpServer, tmp_path: Path, unreachable_port: int
) -> None:
    data = write_random(http_server.root / "h" / "ref.fa", 70000, seed=9)
    settings = fast_settings(tmp_path, connect_timeout_seconds=1.0)
    seen: list[int] = []
    assert (
        stage_inputs([http_server.url("h/ref.fa")], tmp_path / "in", settings, progress=seen.append)
        == 70000
    )
    assert (tmp_path / "in" / "ref.fa").read_bytes() == data
    assert sum(seen) == 70000
    entry = next(
        iter(
            transport_for(parse_uri(http_server.url("h/ref.fa")), settings).list(
                parse_uri(http_server.url("h/ref.fa"))
            )
        )
    )
    assert (entry.path, entry.size) == ("ref.fa", 70000)

    with pytest.raises(TransferError, match="HTTP 404") as missing:
        stage_inputs([http_server.url("h/missing.fa")], tmp_path / "in2", settings)
    assert not missing.value.retryable
    with pytest.raises(TransferError, match="cannot reach the server"):
        stage_inputs([f"http://127.0.0.1:{unreachable_port}/x"], tmp_path / "in2", settings)
    with pytest.raises(TransferError, match="HTTP folders cannot be listed"):
        stage_inputs([http_server.url("h/")], tmp_path / "in2", settings)
    uri = parse_uri(http_server.url("h/out.txt"))
    with pytest.raises(TransferError, match="download-only"):
        transport_for(uri, settings).upload(tmp_path / "in" / "ref.fa", uri)
    assert not any((tmp_path / "in2").iterdir())
