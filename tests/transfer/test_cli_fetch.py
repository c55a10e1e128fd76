"""`scitq fetch copy|list|sync` against the moto server, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from scitq.cli import scitq
from tests.cli.conftest import assert_one_line_error
from tests.fixtures.servers import S3Server, write_random


def _fetch(s3_server: S3Server, *args: str) -> Result:
    return CliRunner().invoke(scitq, ["fetch", *args], env=s3_server.env())


def test_copy_and_list(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    data = write_random(tmp_path / "a.txt", 1234, seed=20)
    result = _fetch(s3_server, "copy", str(tmp_path / "a.txt"), f"s3://{s3_bucket}/d/")
    assert result.exit_code == 0, result.output
    assert "copied 1234 bytes" in result.stdout

    listed = _fetch(s3_server, "list", f"s3://{s3_bucket}/d/", "--json")
    assert listed.exit_code == 0, listed.output
    assert [(e["path"], e["size"]) for e in json.loads(listed.stdout)] == [("a.txt", 1234)]
    table = _fetch(s3_server, "list", f"s3://{s3_bucket}/", "--recursive")
    assert "d/a.txt" in table.stdout and "1234" in table.stdout

    back = tmp_path / "back" / "renamed.txt"
    result = _fetch(s3_server, "copy", f"s3://{s3_bucket}/d/a.txt", str(back))
    assert result.exit_code == 0, result.output
    assert back.read_bytes() == data
    assert sorted(p.name for p in back.parent.iterdir()) == ["renamed.txt"]


def test_copy_folders_both_ways(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    write_random(tmp_path / "src" / "one", 10, seed=21)
    write_random(tmp_path / "src" / "deep" / "two", 20, seed=22)
    up = _fetch(s3_server, "copy", str(tmp_path / "src"), f"s3://{s3_bucket}/tree/")
    assert up.exit_code == 0, up.output
    down = _fetch(s3_server, "copy", f"s3://{s3_bucket}/tree/", str(tmp_path / "dst") + "/")
    assert down.exit_code == 0, down.output
    assert (tmp_path / "dst" / "deep" / "two").read_bytes() == (
        tmp_path / "src" / "deep" / "two"
    ).read_bytes()


def test_sync_copies_only_what_differs(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "a", 100, seed=23)
    write_random(src / "sub" / "b", 200, seed=24)
    target = f"s3://{s3_bucket}/sync/"
    first = _fetch(s3_server, "sync", str(src), target)
    assert first.exit_code == 0, first.output
    assert "copied 2 files (300 bytes), 0 already up to date" in first.stdout
    again = _fetch(s3_server, "sync", str(src), target)
    assert "copied 0 files (0 bytes), 2 already up to date" in again.stdout
    write_random(src / "sub" / "b", 200, seed=25)  # same size, other content: MD5 differs
    changed = _fetch(s3_server, "sync", str(src), target)
    assert "copied 1 files (200 bytes), 1 already up to date" in changed.stdout

    local = tmp_path / "mirror"
    down = _fetch(s3_server, "sync", target, str(local) + "/")
    assert down.exit_code == 0, down.output
    assert (local / "sub" / "b").read_bytes() == (src / "sub" / "b").read_bytes()
    assert "copied 0 files" in _fetch(s3_server, "sync", target, str(local) + "/").stdout


def test_errors_are_one_line(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    missing = _fetch(s3_server, "copy", f"s3://{s3_bucket}/nothing.txt", str(tmp_path) + "/")
    assert_one_line_error(missing, 10, f"download of s3://{s3_bucket}/nothing.txt failed")
    assert list(tmp_path.iterdir()) == []
    bad = _fetch(s3_server, "list", "gopher://x/")
    assert_one_line_error(bad, 2, "unknown scheme 'gopher'")
    upload_http = _fetch(s3_server, "copy", __file__, "https://example.org/x/")
    assert_one_line_error(upload_http, 2, "download-only")
    sync_file = _fetch(s3_server, "sync", __file__, f"s3://{s3_bucket}/x/")
    assert_one_line_error(sync_file, 2, "sync works on folders")
