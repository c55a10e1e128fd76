"""Resumable HTTP downloads against a real local HTTP server that drops connections
mid-body: the download continues with ``Range`` + ``If-Range`` where it stopped, starts
over when the file changed, and fails (retryable) when the server takes no ranges."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scitq.errors import TransferError
from scitq.transfer import parse_uri, stage_inputs, transport_for
from scitq.transfer.disk import PARTIAL_MARK
from scitq.transfer.transports.http import RESUMES
from tests.fixtures.servers import fast_settings

SIZE = 3 * 2**20 + 123


class Flaky:
    """An HTTP server of one file that closes the connection after ``drop_after`` bytes
    of each of its first ``drops`` bodies."""

    def __init__(self, data: bytes, *, ranges: bool = True, drops: int = 1,
                 drop_after: int = 2**20) -> None:  # fmt: skip
        self.data, self.ranges, self.drops, self.drop_after = data, ranges, drops, drop_after
        self.requests: list[dict[str, str]] = []
        #: replaces the file after the first drop (a new version, a new ETag)
        self.next_data: bytes | None = None
        #: a wrong offset in the first 206 answer
        self.bad_offset = False
        handler = type("Handler", (_Handler,), {"flaky": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def etag(self) -> str:
        return '"' + hashlib.md5(self.data).hexdigest() + '"'

    def url(self, name: str = "reads.fq") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    flaky: Flaky
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server = self.flaky
        kept = ("Range", "If-Range")
        server.requests.append({k: v for k, v in self.headers.items() if k in kept})
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if server.ranges and wanted and self.headers.get("If-Range") == server.etag:
            start, status = int(wanted.removeprefix("bytes=").rstrip("-")), 206
        body = server.data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", server.etag)
        if server.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            offset = start + 1 if server.bad_offset else start
            self.send_header("Content-Range", f"bytes {offset}-{len(server.data) - 1}/"
                                              f"{len(server.data)}")  # fmt: skip
        self.end_headers()
        if server.drops > 0 and len(body) > server.drop_after:
            server.drops -= 1
            self.wfile.write(body[: server.drop_after])
            self.wfile.flush()
            if server.next_data is not None:
                server.data, server.next_data = server.next_data, None
            self.close_connection = True
            self.connection.shutdown(2)  # the connection drops mid-body
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def data() -> bytes:
    return bytes((i * 7 + i // 1000) % 256 for i in range(SIZE))


@pytest.fixture
def flaky(data: bytes) -> Iterator[Flaky]:
    server = Flaky(data)
    yield server
    server.stop()


def test_a_dropped_download_continues_where_it_stopped(
    flaky: Flaky, data: bytes, tmp_path: Path
) -> None:
    flaky.drops = 2
    settings = fast_settings(tmp_path, retries=0)  # no retry: the resume alone must do it
    got = stage_inputs([flaky.url()], tmp_path / "in", settings)
    assert got == SIZE
    assert (tmp_path / "in" / "reads.fq").read_bytes() == data
    assert flaky.requests == [
        {},
        {"Range": f"bytes={2**20}-", "If-Range": flaky.etag},
        {"Range": f"bytes={2 * 2**20}-", "If-Range": flaky.etag},
    ]
    assert not [p for p in (tmp_path / "in").iterdir() if PARTIAL_MARK in p.name]


def test_a_file_changed_between_drop_and_resume_is_fetched_whole_again(
    flaky: Flaky, tmp_path: Path
) -> None:
    flaky.next_data = b"new version " * 100_000
    uri = parse_uri(flaky.url())
    size = transport_for(uri, fast_settings(tmp_path)).download(uri, tmp_path / "in")
    assert (tmp_path / "in" / "reads.fq").read_bytes() == b"new version " * 100_000
    assert size == 1_200_000
    # the resume named the old version: the server sent the new one whole
    assert flaky.requests[1]["Range"] == f"bytes={2**20}-"


def test_without_ranges_or_with_a_wrong_offset_the_attempt_fails(
    data: bytes, tmp_path: Path
) -> None:
    no_ranges = Flaky(data, ranges=False)
    try:
        uri = parse_uri(no_ranges.url())
        with pytest.raises(TransferError) as caught:
            transport_for(uri, fast_settings(tmp_path)).download(uri, tmp_path / "a")
        assert caught.value.retryable
        assert f"connection closed after {2**20} of {SIZE} bytes" in str(caught.value)
        assert "not resumable" in str(caught.value)
        assert list((tmp_path / "a").iterdir()) == []  # nothing partial is left
    finally:
        no_ranges.stop()
    bad = Flaky(data)
    bad.bad_offset = True
    try:
        uri = parse_uri(bad.url())
        with pytest.raises(TransferError, match=f"resumed at {2**20 + 1} instead of byte {2**20}"):
            transport_for(uri, fast_settings(tmp_path)).download(uri, tmp_path / "b")
    finally:
        bad.stop()
    endless = Flaky(data, drops=RESUMES + 5, drop_after=1000)
    try:
        uri = parse_uri(endless.url())
        with pytest.raises(TransferError, match=f"after {RESUMES} resumes"):
            transport_for(uri, fast_settings(tmp_path)).download(uri, tmp_path / "c")
        assert len(endless.requests) == RESUMES + 1
    finally:
        endless.stop()
