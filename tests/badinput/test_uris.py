"""Malformed URIs: refused by scitq.transfer.validate_uri with a one-line message that
names the URI (never a password), and refused by submit before anything is queued."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from scitq import errors
from scitq.client import Client
from scitq.errors import InvalidUri
from scitq.transfer import validate_uri
from tests.badinput.snapshot import snapshot

BAD: list[tuple[str, str, str]] = [
    ("", "input", "empty"),
    ("nourischeme", "input", "no scheme"),
    ("gopher://host/x", "input", "gopher"),
    ("s3://", "resource", "nothing after"),
    ("s3:///key", "input", "bucket"),
    ("s3@bogus://b/x", "input", "@options"),
    ("s3://b/x|explode", "input", "explode"),
    ("s3://b/x|", "resource", "unknown action"),
    ("s3://b/x|mv:../up", "input", ".."),
    ("ftp://bob:hunter2pw@host/x", "input", "password"),
    ("https://user:hunter2pw@host/x", "resource", "password"),
    ("http://h/x", "output", "download-only"),
    ("s3://b/o/|gunzip", "output", "actions"),
    ("file://a\x00b", "input", "control character"),
    ("https://h/x\nINJECT", "input", "control character"),
    ("s3://b/x\r\n", "output", "white space"),
    ("ftp://", "input", "nothing after"),
]


@pytest.mark.parametrize(("uri", "role", "fragment"), BAD, ids=[repr(b[0]) for b in BAD])
def test_validate_uri_refuses(uri: str, role: Any, fragment: str) -> None:
    with pytest.raises(InvalidUri) as info:
        validate_uri(uri, role)
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message and "\r" not in message
    assert "hunter2pw" not in message


FIELD = {"input": "inputs", "resource": "resources", "output": "output"}


@pytest.mark.sql
@pytest.mark.parametrize(("uri", "role", "fragment"), BAD, ids=[repr(b[0]) for b in BAD])
def test_submit_refuses_before_queuing(
    db: str, conn: psycopg.Connection[Any], uri: str, role: str, fragment: str
) -> None:
    before = snapshot(conn)
    field = FIELD[role]
    value: Any = uri if field == "output" else [uri]
    with Client(db) as client, pytest.raises(errors.InvalidArgument) as info:
        client.submit("true", batch="b", **{field: value})
    assert "\n" not in str(info.value) and "hunter2pw" not in str(info.value)
    assert snapshot(conn) == before


@pytest.mark.sql
def test_submit_refuses_undecodable_bytes_naming_the_field(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """A path from os.fsdecode of bytes that are not UTF-8 (a surrogate escape)."""
    before = snapshot(conn)
    with Client(db) as client, pytest.raises(errors.InvalidArgument, match="inputs"):
        client.submit("true", batch="b", inputs=["file:///data/\udcff.fq"])
    assert snapshot(conn) == before
