"""s3:// against a moto server process."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from scitq.errors import TransferError
from scitq.transfer import parse_uri, stage_inputs, transport_for, upload_outputs
from scitq.transfer.disk import PARTIAL_MARK
from tests.fixtures.servers import S3Server, fast_settings, write_random


def _partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if PARTIAL_MARK in p.name or ".scitq-staging" in str(p)]


def test_upload_download_roundtrip_and_list(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    settings = s3_server.transfer_settings(tmp_path)
    out = tmp_path / "out"
    data = write_random(out / "a.txt", 1000, seed=1)
    write_random(out / "sub" / "b.bin", 3000, seed=2)
    (out / "link").symlink_to(out / "a.txt")  # symbolic links are not uploaded

    sent = upload_outputs(out, f"s3://{s3_bucket}/results", settings)
    assert sent == 4000
    keys = sorted(
        o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
    )
    assert keys == ["results/a.txt", "results/sub/b.bin"]

    transport = transport_for(parse_uri(f"s3://{s3_bucket}/results/"), settings)
    listed = {e.path: e for e in transport.list(parse_uri(f"s3://{s3_bucket}/results/"), True)}
    assert set(listed) == {"a.txt", "sub/b.bin"}
    assert listed["a.txt"].size == 1000
    assert listed["a.txt"].md5 == hashlib.md5(data).hexdigest()
    shallow = list(transport.list(parse_uri(f"s3://{s3_bucket}/results/"), False))
    assert {(e.path, e.is_dir) for e in shallow} == {("a.txt", False), ("sub", True)}

    inputs = tmp_path / "input"
    got = stage_inputs(
        [f"s3://{s3_bucket}/results/a.txt", f"s3://{s3_bucket}/results/|mv:copy"], inputs, settings
    )
    assert got == 1000 + 4000
    assert (inputs / "a.txt").read_bytes() == data
    assert (inputs / "copy" / "sub" / "b.bin").stat().st_size == 3000
    assert _partials(inputs) == []


@pytest.mark.slow
def test_multipart_over_8_mib(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    settings = s3_server.transfer_settings(tmp_path)
    big = tmp_path / "big.bin"
    data = write_random(big, 9 * 2**20 + 123, seed=3)
    transport = transport_for(parse_uri(f"s3://{s3_bucket}/x"), settings)
    seen: list[int] = []
    assert transport.upload(big, parse_uri(f"s3://{s3_bucket}/big/"), seen.append) == len(data)
    assert sum(seen) == len(data)
    head = s3_server.client().head_object(Bucket=s3_bucket, Key="big/big.bin")
    assert head["ETag"].strip('"').endswith("-2")  # two parts: a multipart upload
    dest = tmp_path / "dest"
    assert stage_inputs([f"s3://{s3_bucket}/big/big.bin"], dest, settings) == len(data)
    assert hashlib.sha256((dest / "big.bin").read_bytes()).digest() == hashlib.sha256(data).digest()


def test_missing_object_is_a_clear_permanent_error(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    settings = s3_server.transfer_settings(tmp_path)
    dest = tmp_path / "input"
    uri = f"s3://{s3_bucket}/nothing/here.txt"
    with pytest.raises(TransferError) as caught:
        stage_inputs([uri], dest, settings)
    assert caught.value.uri == uri
    assert caught.value.reason == "not found (no such object or bucket)"
    assert not caught.value.retryable
    assert list(dest.iterdir()) == []
    with pytest.raises(TransferError, match="no object under this prefix"):
        stage_inputs([f"s3://{s3_bucket}/nothing/"], dest, settings)
    with pytest.raises(TransferError, match="no such object or bucket"):
        stage_inputs([f"s3://no-such-bucket-{s3_bucket}/x"], dest, settings)


def test_wrong_credentials(s3_auth_server: S3Server, tmp_path: Path) -> None:
    settings = s3_auth_server.transfer_settings(tmp_path)
    source = tmp_path / "f.txt"
    source.write_text("x")
    uri = parse_uri("s3://bucket/out/")
    with pytest.raises(TransferError) as caught:
        upload_outputs(tmp_path, uri, settings)
    assert caught.value.direction == "upload"
    assert caught.value.reason == "the S3 access key is not recognised"
    assert not caught.value.retryable
    assert "testing-secret-key" not in str(caught.value)
    with pytest.raises(TransferError, match=r"access denied|not recognised"):
        stage_inputs(["s3://bucket/f.txt"], tmp_path / "in", settings)


def test_unreachable_endpoint_is_retried_then_fails(tmp_path: Path, unreachable_port: int) -> None:
    from scitq.config import S3Settings

    settings = fast_settings(
        tmp_path,
        s3=S3Settings(
            endpoint_url=f"http://127.0.0.1:{unreachable_port}",
            region="us-east-1",
            access_key_id="a",
            secret_access_key="b",
        ),
        connect_timeout_seconds=1.0,
    )
    dest = tmp_path / "input"
    with pytest.raises(TransferError) as caught:
        stage_inputs(["s3://bucket/key.txt"], dest, settings)
    assert "cannot reach the S3 endpoint" in caught.value.reason
    assert caught.value.retryable
    assert str(caught.value).startswith("download of s3://bucket/key.txt failed")
    assert not any(dest.iterdir())
