"""Submit-time URI validation: nothing is queued when a URI is malformed or unknown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from scitq.cli import scitq
from scitq.client import Client
from scitq.errors import InvalidUri
from tests.cli.conftest import assert_one_line_error

pytestmark = pytest.mark.sql


def _task_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM scitq.task").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-i", "gopher://host/x"], "-i/--input: unknown scheme 'gopher'"),
        (["-r", "s3://b/ref.tgz|explode"], "-r/--resource: unknown action 'explode'"),
        (["-o", "https://example.org/out/"], "-o/--output: output 'https://example.org/out/'"),
        (["-i", "ftp://bob:pw@host/x"], "contains a password"),
        # what would be queued and could never work
        (["-i", "s3://bucket"], "names a bucket but no key: s3://bucket/KEY for an object"),
        (["-o", "s3://Not A Bucket!/x/"], "'Not A Bucket!' is not a bucket name"),
        (["-i", "ftp://ftp.example.org"], "names a host but no path: ftp://ftp.example.org/PATH"),
        (["-i", "file://data/x.fq"], "must name an absolute path: file:///data/x.fq"),
    ],
)
def test_launch_refuses_bad_uris(
    db: str, conn: psycopg.Connection[Any], args: list[str], fragment: str
) -> None:
    result = CliRunner().invoke(scitq, ["--database-url", db, "launch", *args, "--", "true"])
    assert_one_line_error(result, 2, fragment)
    assert "pw@" not in result.stderr
    assert _task_count(conn) == 0


def test_launch_file_refuses_bad_uri_naming_the_line(
    db: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.jsonl"
    good = {"command": "true", "inputs": ["s3://b/a.fq"], "output": "s3://b/out/"}
    bad = {"command": "true", "inputs": ["s3://b/a.fq|mv:../up"]}
    tasks.write_text("\n".join(json.dumps(t) for t in (good, good, bad)) + "\n")
    result = CliRunner().invoke(scitq, ["--database-url", db, "launch", "--from-file", str(tasks)])
    assert result.exit_code == 2, result.output
    assert "line 3" in result.stderr and "must not contain '..'" in result.stderr
    assert _task_count(conn) == 0


def test_client_refuses_bad_uris_before_queuing(db: str, conn: psycopg.Connection[Any]) -> None:
    with Client(db) as client:
        with pytest.raises(InvalidUri, match=r"task #2 resources: unknown scheme 'nope'"):
            client.submit_many(
                "b",
                [
                    {"command": "true", "inputs": ["s3://bucket/ok"]},
                    {"command": "true", "resources": ["nope://x"]},
                ],
            )
        with pytest.raises(InvalidUri, match="download-only"):
            client.submit("true", output="http://example.org/out/")
        assert _task_count(conn) == 0
        task = client.submit(
            "true", inputs=["s3://bucket/in.fq.gz|gunzip"], output="file:///tmp/out/"
        )
        assert task.id > 0
    assert _task_count(conn) == 1


@pytest.mark.parametrize(
    "uri", ["s3://bucket/", "s3://my.bucket_2/k", "ftp://host/", "file:///data/x", "http://host"]
)
def test_launch_accepts_what_can_work(db: str, conn: psycopg.Connection[Any], uri: str) -> None:
    result = CliRunner().invoke(scitq, ["--database-url", db, "launch", "-i", uri, "--", "true"])
    assert result.exit_code == 0, result.output
    assert _task_count(conn) == 1
