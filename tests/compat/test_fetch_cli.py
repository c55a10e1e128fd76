"""``scitq-fetch``, scitq v1's data command: every sub-command and flag, through click's
CliRunner, against moto configured by the environment."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from scitq.cli.v1_fetch import scitq_fetch
from tests.fixtures.servers import S3Server, write_random

PROJECT = Path(__file__).resolve().parents[2]


def run(s3: S3Server, *args: str) -> Result:
    return CliRunner().invoke(scitq_fetch, list(args), env=s3.env())


def test_the_console_script_is_declared() -> None:
    scripts = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["scitq-fetch"] == "scitq.cli.v1_fetch:main"


@pytest.fixture
def folder(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> str:
    write_random(tmp_path / "up" / "a.txt", 11, seed=1)
    write_random(tmp_path / "up" / "sub" / "b.txt", 22, seed=2)
    result = run(s3_server, "copy", str(tmp_path / "up"), f"s3://{s3_bucket}/data/")
    assert result.exit_code == 0, result.output
    return f"s3://{s3_bucket}/data"


def test_list_rlist_nrlist(s3_server: S3Server, folder: str) -> None:
    listed = run(s3_server, "list", folder)
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["name", "creation_date", "modification_date", "size"]
    assert sorted(row.split()[0] for row in rows) == [f"{folder}/a.txt", f"{folder}/sub/b.txt"]
    assert {row.split()[-1] for row in rows} == {"11", "22"}

    relative = run(s3_server, "rlist", "--md5", folder + "/")
    header, *rows = relative.stdout.splitlines()
    assert header.split()[0] == "rel_name" and header.split()[-1] == "md5"
    assert sorted(row.split()[0] for row in rows) == ["a.txt", "sub/b.txt"]
    assert all(len(row.split()[-1]) == 32 for row in rows)

    for args in (["nrlist", folder], ["rlist", "--not-recursive", folder]):
        shallow = run(s3_server, *args)
        assert sorted(r.split()[0] for r in shallow.stdout.splitlines()[1:]) == ["a.txt", "sub/"]


def test_copy_sync_delete_and_ncdu(
    s3_server: S3Server, folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    copied = run(s3_server, "copy", f"{folder}/a.txt")  # DST defaults to .
    assert copied.exit_code == 0, copied.output
    assert (tmp_path / "a.txt").stat().st_size == 11

    synced = run(s3_server, "-p", "2", "sync", folder, "local", "--include", "b.*")
    assert synced.exit_code == 0, synced.output
    assert "copied 1 files (22 bytes)" in synced.stdout
    assert [p.name for p in (tmp_path / "local").rglob("*") if p.is_file()] == ["b.txt"]

    dry = run(s3_server, "delete", folder, "--include", "*.txt", "--dryrun")
    assert dry.stdout.splitlines() == [
        f"would delete {folder}/a.txt",
        f"would delete {folder}/sub/b.txt",
    ]
    gone = run(s3_server, "delete", f"{folder}/a.txt")
    assert gone.stdout.strip() == f"deleted {folder}/a.txt"
    left = run(s3_server, "rlist", folder)
    assert [r.split()[0] for r in left.stdout.splitlines()[1:]] == ["sub/b.txt"]

    ncdu = run(s3_server, "ncdu", folder, "--only-file")
    assert ncdu.exit_code == 0, ncdu.output
    path = Path(ncdu.stdout.strip().rsplit(" ", 1)[-1])
    assert json.loads(path.read_text())[3][0] == {"name": folder}
    path.unlink()


def test_errors_are_one_line(s3_server: S3Server, s3_bucket: str) -> None:
    cases = [
        (["list", f"s3://{s3_bucket}/nothing"], 10, f"list of s3://{s3_bucket}/nothing failed"),
        (["list", "s3://no-such-bucket-here/x/"], 10, "no such bucket"),
        (["copy", "nosuch://a/b", "."], 2, "unknown scheme 'nosuch'"),
        (["delete", "https://example.org/x"], 2, "cannot delete"),
    ]
    for args, code, fragment in cases:
        result = run(s3_server, *args)
        assert result.exit_code == code, (args, result.output)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("scitq-fetch: error: "), result.stderr
        assert fragment in lines[0], lines[0]
