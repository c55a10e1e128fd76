"""scitq v1's ``scitq.fetch`` functions, as v1 scripts call them, against a moto S3 server
configured through the environment (``SCITQ_S3_*``) and local folders."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import json
import logging
import os
from pathlib import Path

import pytest

from scitq import fetch
from scitq.fetch import FetchErrorNoRepeat, UnsupportedError
from tests.fixtures.servers import S3Server, write_random


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def runs(s3_env: S3Server, s3_bucket: str, tmp_path: Path) -> str:
    """s3://<bucket>/runs/ with two samples of two reads and a README, as v1 pipelines
    find their input; returns ``s3://<bucket>/runs`` (no trailing slash, as they pass it)."""
    client = s3_env.client()
    for sample in ("s1", "s2"):
        for read in (1, 2):
            body = f"@{sample} read {read}\nACGT\n+\nIIII\n".encode()
            client.put_object(
                Bucket=s3_bucket, Key=f"runs/{sample}/{sample}_{read}.fastq.gz", Body=body
            )
    client.put_object(Bucket=s3_bucket, Key="runs/README", Body=b"hello")
    return f"s3://{s3_bucket}/runs"


def test_list_content_names_items_by_full_uri_like_v1(runs: str) -> None:
    items = fetch.list_content(runs)  # no trailing slash: the folder, as v1 read it
    names = sorted(item.name for item in items)
    assert names == [
        f"{runs}/README",
        f"{runs}/s1/s1_1.fastq.gz",
        f"{runs}/s1/s1_2.fastq.gz",
        f"{runs}/s2/s2_1.fastq.gz",
        f"{runs}/s2/s2_2.fastq.gz",
    ]
    # the metaphlan4 example's idiom: samples are the folders of the fastqs
    fastqs = [i.name for i in items if i.name.endswith("fastq.gz")]
    assert sorted({f.split("/")[-2] for f in fastqs}) == ["s1", "s2"]
    readme = next(i for i in items if i.rel_name == "README")
    assert readme.size == 5 and readme.md5 is None  # MD5s only when asked for
    assert isinstance(readme.modification_date, datetime.datetime)
    assert readme.creation_date == readme.modification_date
    with_md5 = {i.rel_name: i.md5 for i in fetch.list_content(runs + "/", md5=True)}
    assert with_md5["README"] == hashlib.md5(b"hello").hexdigest()

    top = sorted((i.rel_name, i.name) for i in fetch.list_content(runs, no_rec=True))
    assert top == [("README", f"{runs}/README"), ("s1/", f"{runs}/s1/"), ("s2/", f"{runs}/s2/")]
    (one,) = fetch.list_content(f"{runs}/README")
    assert (one.name, one.rel_name, one.size) == (f"{runs}/README", "README", 5)


def test_list_content_of_a_local_folder_and_errors(tmp_path: Path, s3_env: S3Server) -> None:
    write_random(tmp_path / "d" / "a", 10, seed=1)
    data = write_random(tmp_path / "d" / "sub" / "b", 20, seed=2)
    items = {i.rel_name: i for i in fetch.list_content(str(tmp_path / "d"), md5=True)}
    assert sorted(items) == ["a", "sub/b"]
    assert items["sub/b"].name == f"file://{tmp_path}/d/sub/b"
    assert items["sub/b"].md5 == hashlib.md5(data).hexdigest()
    with pytest.raises(FetchErrorNoRepeat, match=r"list of .*nothing.* failed: no such"):
        fetch.list_content(str(tmp_path / "nothing"))
    with pytest.raises(UnsupportedError, match="unknown scheme 'nosuch'"):
        fetch.list_content("nosuch://x/y")


def test_sync_remote_folder_to_a_relative_local_folder_then_only_what_changed(
    runs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: S3Server
) -> None:
    monkeypatch.chdir(tmp_path)
    first = fetch.sync(runs, "results")  # the examples' sync(output_s3, batch)
    assert len(first.copied) == 5
    assert _tree(tmp_path / "results")["s2/s2_1.fastq.gz"].startswith(b"@s2 read 1")
    assert fetch.sync(runs, "results").copied == []  # same names and sizes: nothing
    (tmp_path / "results" / "README").write_bytes(b"hi")  # another size: copied again
    assert fetch.sync(runs, "results").copied == ["README"]
    assert (tmp_path / "results" / "README").read_bytes() == b"hello"

    only = fetch.sync(runs + "/", str(tmp_path / "only"), include=["*_1.fastq.gz"])
    assert only.copied == ["s1/s1_1.fastq.gz", "s2/s2_1.fastq.gz"]

    bucket = runs.split("/")[2]
    back = fetch.sync(str(tmp_path / "results"), f"s3://{bucket}/copy")
    assert len(back.copied) == 5
    assert len(fetch.list_content(f"s3://{bucket}/copy/")) == 5


def test_get_put_copy_with_actions_and_file_lists(
    s3_env: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "ref.fa.gz"
    source.write_bytes(gzip.compress(b">chr1\nACGT\n"))
    fetch.put(str(source), f"s3://{s3_bucket}/refs/")  # into the folder
    fetch.put(str(source), f"s3://{s3_bucket}/named.gz")  # as that object
    assert [i.rel_name for i in fetch.list_content(f"s3://{s3_bucket}/refs/")] == ["ref.fa.gz"]

    fetch.get(f"s3://{s3_bucket}/refs/ref.fa.gz|gunzip", str(tmp_path / "out") + "/")
    assert (tmp_path / "out" / "ref.fa").read_bytes() == b">chr1\nACGT\n"
    fetch.get(f"s3://{s3_bucket}/named.gz", str(tmp_path / "exact.gz"))  # a file name
    assert (tmp_path / "exact.gz").read_bytes() == source.read_bytes()
    fetch.get(f"s3://{s3_bucket}/refs|mv:sub", str(tmp_path / "moved"))  # folder, no slash
    assert _tree(tmp_path / "moved") == {"sub/ref.fa.gz": source.read_bytes()}
    fetch.get([f"s3://{s3_bucket}/named.gz", f"s3://{s3_bucket}/refs/"], str(tmp_path / "many"))
    assert sorted(_tree(tmp_path / "many")) == ["named.gz", "ref.fa.gz"]

    fetch.copy(f"s3://{s3_bucket}/refs/", f"s3://{s3_bucket}/mirror/")  # remote to remote
    assert [i.rel_name for i in fetch.list_content(f"s3://{s3_bucket}/mirror")] == ["ref.fa.gz"]
    write_random(tmp_path / "set" / "x", 3, seed=3)
    write_random(tmp_path / "set" / "y", 4, seed=4)
    fetch.copy(str(tmp_path / "set"), f"s3://{s3_bucket}/set/", file_list=["y"])
    assert [i.rel_name for i in fetch.list_content(f"s3://{s3_bucket}/set/")] == ["y"]

    with pytest.raises(UnsupportedError, match="actions apply to inputs and resources only"):
        fetch.put(str(source), f"s3://{s3_bucket}/x|gunzip")
    with pytest.raises(FetchErrorNoRepeat, match="no such file or directory"):
        fetch.put(str(tmp_path / "missing"), f"s3://{s3_bucket}/x")
    with pytest.raises(FetchErrorNoRepeat, match=f"s3://{s3_bucket}/none.*not found"):
        fetch.get(f"s3://{s3_bucket}/none", str(tmp_path / "none"))


def test_info_delete_and_recursive_delete(
    runs: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    about = fetch.info(f"{runs}/README", md5=True)
    assert (about.type, about.size, about.md5) == ("file", 5, hashlib.md5(b"hello").hexdigest())
    assert fetch.info(runs).type == "dir"  # a prefix without its slash

    with caplog.at_level(logging.WARNING, logger="scitq.fetch"):
        planned = fetch.recursive_delete(runs, include=["*_2.fastq.gz"], dryrun=True)
    assert planned == [f"{runs}/s1/s1_2.fastq.gz", f"{runs}/s2/s2_2.fastq.gz"]
    assert "Would delete" in caplog.text
    assert len(fetch.list_content(runs)) == 5  # a dry run deletes nothing
    assert fetch.recursive_delete(runs, include=["*_2.fastq.gz"]) == planned
    fetch.delete(f"{runs}/README")
    assert sorted(i.rel_name for i in fetch.list_content(runs)) == [
        "s1/s1_1.fastq.gz",
        "s2/s2_1.fastq.gz",
    ]
    with pytest.raises(FetchErrorNoRepeat, match="not found"):
        fetch.delete(f"{runs}/README")
    with pytest.raises(UnsupportedError, match="cannot delete"):
        fetch.delete("https://example.org/file")


def test_small_helpers_and_ncdu(runs: str, tmp_path: Path) -> None:
    assert fetch.check_uri("s3://bucket/key") == "s3"
    assert fetch.check_uri("run+fastq@sra://SRR000001") == "run+fastq"
    with pytest.raises(UnsupportedError, match="unknown scheme 'azure'"):
        fetch.check_uri("azure://container/x")
    assert fetch.get_file_uri("file:///data/x") == "/data/x"
    assert fetch.get_file_uri("data/x") == "data/x"
    assert fetch.get_file_uri("s3://b/x") is None
    assert fetch.pathjoin("s3://b/", "/runs/", "x.fq") == "s3://b/runs/x.fq"
    assert fetch.pathjoin("/data", "./", "x/") == "/data/x/"

    stream = io.StringIO()
    fetch.ncdu(runs, stream)
    version, minor, header, tree = json.loads(stream.getvalue())
    assert (version, minor, header["progname"]) == (1, 0, "scitq")
    assert tree[0] == {"name": runs}
    folders = {entry[0]["name"]: entry[1:] for entry in tree[1:] if isinstance(entry, list)}
    assert sorted(folders) == ["s1", "s2"]
    assert {f["name"] for f in folders["s1"]} == {"s1_1.fastq.gz", "s1_2.fastq.gz"}
    assert [f["dsize"] for f in tree[1:] if isinstance(f, dict)] == [5]
    assert os.path.exists(fetch.ncdu_file(runs, tmp_path / "n.json"))
