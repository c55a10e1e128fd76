"""The URI grammar and submit-time validation."""

from __future__ import annotations

import pytest

from scitq.errors import InvalidArgument, InvalidUri
from scitq.transfer import parse_uri, validate_uri
from scitq.transfer.uri import Action


def test_parse_full_grammar() -> None:
    uri = parse_uri("run+fastq@sra@filter_r1://SRR000001")
    assert uri.scheme == "run+fastq"
    assert uri.options == ("sra", "filter_r1")
    assert uri.authority == "SRR000001"
    assert uri.actions == ()
    assert not uri.is_folder


def test_parse_actions_and_parts() -> None:
    uri = parse_uri("S3://bucket/data/ref.tar.gz|untar|mv:ref/v1")
    assert uri.scheme == "s3"
    assert uri.authority == "bucket"
    assert uri.path == "/data/ref.tar.gz"
    assert uri.name == "ref.tar.gz"
    assert uri.actions == (Action("untar"), Action("mv", "ref/v1"))
    assert uri.subdir == "ref/v1"
    assert uri.location == "s3://bucket/data/ref.tar.gz"
    assert str(uri) == "S3://bucket/data/ref.tar.gz|untar|mv:ref/v1"


def test_folder_and_child() -> None:
    uri = parse_uri("s3://bucket/out/")
    assert uri.is_folder
    assert uri.name == "out"
    child = uri.child("a/b.txt")
    assert child.text == "s3://bucket/out/a/b.txt"
    assert not child.is_folder


def test_file_uri_keeps_absolute_path() -> None:
    uri = parse_uri("file:///scratch/ref.fa")
    assert uri.rest == "/scratch/ref.fa"
    assert uri.name == "ref.fa"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty URI"),
        ("bucket/key", "no scheme"),
        (" s3://b/k", "white space"),
        ("s3://b/k\n", "white space"),
        ("s3://b/k\x00x", "control character"),
        ("3s://b/k", "invalid scheme"),
        ("s3@bad option://b/k", "invalid option"),
        ("s3://", "nothing after"),
        ("s3://b/k|explode", "unknown action 'explode'"),
        ("s3://b/k|gunzip:x", "takes no argument"),
        ("s3://b/k|mv:", "needs a subdirectory"),
        ("s3://b/k|mv:/abs", "relative path"),
        ("s3://b/k|mv:a/../../b", "must not contain '..'"),
        ("s3://b/k|gunzip|gunzip", "appears twice"),
    ],
)
def test_malformed_uris_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(InvalidUri, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        parse_uri(text)


def test_invalid_uri_is_an_invalid_argument() -> None:
    assert issubclass(InvalidUri, InvalidArgument)
    assert InvalidUri.exit_code == 2


def test_password_is_refused_and_never_shown() -> None:
    with pytest.raises(InvalidUri) as caught:
        parse_uri("ftp://alice:hunter2@ftp.example.org/data.txt")
    assert "hunter2" not in str(caught.value)
    assert "contains a password" in str(caught.value)
    # a user name alone selects a .netrc entry
    assert parse_uri("ftp://alice@ftp.example.org/x").authority == "alice@ftp.example.org"


def test_validate_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(InvalidUri, match=r"unknown scheme 'gopher'.*known: .*file.*s3"):
        validate_uri("gopher://host/x")


@pytest.mark.parametrize(
    ("text", "role", "fragment"),
    [
        ("s3:///key", "input", "names no bucket"),
        ("http:///x", "input", "names no host"),
        ("https://example.org/x", "output", "download-only"),
        ("s3://b/out/|gunzip", "output", "actions apply to inputs"),
        ("file://", "resource", "nothing after"),
    ],
)
def test_validate_scheme_rules(text: str, role: str, fragment: str) -> None:
    with pytest.raises(InvalidUri, match=fragment):
        validate_uri(text, role)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("s3://bucket/in/sample.fq.gz|gunzip", "input"),
        ("ftp://ftp.example.org/pub/db.tgz|untar|mv:db", "resource"),
        ("https://example.org/ref.fa", "input"),
        ("file:///scratch/out/", "output"),
        ("s3://bucket/out/", "output"),
        ("ftp://host/out/", "output"),
    ],
)
def test_validate_accepts_good_uris(text: str, role: str) -> None:
    assert validate_uri(text, role).text == text  # type: ignore[arg-type]
