"""What porting v1 pipelines hit in scitq.transfer: the resource cache keyed by endpoint
and URI, listing errors in one line that say "list", prefixes read as folders (as v1
did), and v1's space-separated URIs refused by the native API, with the URI named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from scitq.cli import scitq
from scitq.client import Client
from scitq.errors import InvalidUri, TransferError
from scitq.transfer import ResourceCache, stage_inputs
from tests.cli.conftest import assert_one_line_error
from tests.fixtures.servers import S3Server, free_port


@pytest.fixture
def other_s3(tmp_path: Path) -> Iterator[S3Server]:
    """A second, independent S3 store (another moto server)."""
    server = S3Server(free_port(), tmp_path / "moto-other.log")
    yield server
    server.stop()


def test_the_same_uri_on_two_endpoints_is_two_cached_resources(
    s3_server: S3Server, other_s3: S3Server, tmp_path: Path
) -> None:
    bucket, key = "shared-name", "refs/ref.fa"
    for server, body in ((s3_server, b"from the first store"), (other_s3, b"from the second")):
        server.client().create_bucket(Bucket=bucket)
        server.client().put_object(Bucket=bucket, Key=key, Body=body)
    uri = f"s3://{bucket}/{key}"
    first = ResourceCache(s3_server.transfer_settings(tmp_path))
    second = ResourceCache(other_s3.transfer_settings(tmp_path))  # the same cache folder
    assert first.root == second.root
    folder_one, fetched_one = first.get(uri)
    folder_two, fetched_two = second.get(uri)
    assert (fetched_one, fetched_two) == (20, 15)  # both downloaded: neither served the other
    assert folder_one != folder_two
    assert (folder_one / "ref.fa").read_bytes() == b"from the first store"
    assert (folder_two / "ref.fa").read_bytes() == b"from the second"
    assert first.get(uri) == (folder_one, 0)  # and each is cached for its own endpoint
    assert sorted(first.entries()) == sorted(
        f"[s3 endpoint={s.endpoint_url} profile=default] {uri}" for s in (s3_server, other_s3)
    )
    second.forget(uri)
    assert first.get(uri) == (folder_one, 0)


def _fetch(s3_server: S3Server, *args: str) -> Result:
    return CliRunner().invoke(scitq, ["fetch", *args], env=s3_server.env())


def test_listing_buckets_prefixes_and_missing_objects(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="runs/s1/a.fq", Body=b"aaa")
    client.put_object(Bucket=s3_bucket, Key="runs/s2/b.fq", Body=b"bb")

    root = _fetch(s3_server, "list", f"s3://{s3_bucket}")  # no key: the bucket's root
    assert root.exit_code == 0, root.output
    assert "runs/" in root.stdout
    prefix = _fetch(s3_server, "list", "--recursive", f"s3://{s3_bucket}/runs")  # no slash
    assert prefix.exit_code == 0, prefix.output
    assert "s1/a.fq" in prefix.stdout and "s2/b.fq" in prefix.stdout

    missing = _fetch(s3_server, "list", f"s3://{s3_bucket}/runs/s3")
    assert_one_line_error(missing, 10, f"list of s3://{s3_bucket}/runs/s3 failed: not found")
    no_bucket = _fetch(s3_server, "list", "s3://no-such-bucket-anywhere/x/")
    assert_one_line_error(no_bucket, 10, "list of s3://no-such-bucket-anywhere/x/ failed")
    local = _fetch(s3_server, "list", str(tmp_path / "nothing"))
    assert_one_line_error(local, 10, "failed: no such file")
    assert "download" not in missing.stderr + no_bucket.stderr + local.stderr

    copied = _fetch(s3_server, "copy", f"s3://{s3_bucket}/runs", str(tmp_path / "copy") + "/")
    assert copied.exit_code == 0, copied.output
    assert (tmp_path / "copy" / "s2" / "b.fq").read_bytes() == b"bb"
    synced = _fetch(s3_server, "sync", f"s3://{s3_bucket}/runs", str(tmp_path / "synced"))
    assert synced.exit_code == 0, synced.output
    assert "copied 2 files (5 bytes)" in synced.stdout


def test_a_task_input_naming_a_prefix_gets_the_folder(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    s3_server.client().put_object(Bucket=s3_bucket, Key="in/deep/x.txt", Body=b"x")
    settings = s3_server.transfer_settings(tmp_path)
    assert stage_inputs([f"s3://{s3_bucket}/in"], tmp_path / "input", settings) == 1
    assert (tmp_path / "input" / "deep" / "x.txt").read_bytes() == b"x"
    with pytest.raises(TransferError, match=r"download of .*/nothing failed: not found"):
        stage_inputs([f"s3://{s3_bucket}/nothing"], tmp_path / "input", settings)


def _task_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM scitq.task").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.sql
def test_native_submit_refuses_v1_uri_strings_naming_them(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    with Client(db) as client:
        with pytest.raises(InvalidUri, match=r"inputs: URI 's3://b/1 s3://b/2' contains white"):
            client.submit("true", inputs=["s3://b/1 s3://b/2"])
        with pytest.raises(InvalidUri, match="resources: a list of URIs is expected, not the "
                           r"string 's3://b/r' \(write resources=\['s3://b/r'\]\)"):  # fmt: skip
            client.submit("true", resources="s3://b/r")
    result = CliRunner().invoke(
        scitq, ["--database-url", db, "launch", "-i", "s3://b/1 s3://b/2", "--", "true"]
    )
    assert_one_line_error(result, 2, "URI 's3://b/1 s3://b/2' contains white space")
    assert _task_count(conn) == 0
