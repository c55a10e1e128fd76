"""What the probes of issue 15 (point 7) found: a raw ESC left by a malformed escape
sequence, a 500 on a ``next`` holding CR/LF, redirects to an off-site ``Referer``,
cacheable pages, and a session cookie without ``Secure`` over HTTPS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from flask import Flask

from scitq.db.execution import execution_append_output
from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_register
from scitq.web import db as web_db
from scitq.web.ansi import ansi_to_html
from tests.web.conftest import PASSWORD, LoggedIn, csrf_of, make_app


@pytest.mark.parametrize(
    "text",
    ['\x1b["', 'a\x1b["b', '\x1b["31m<b>', "\x1b[\x1b[31mx", "x\x1b", "\x1b]0;t\x1b[1\x1b"],
)
def test_no_escape_byte_survives_malformed_sequences(text: str) -> None:
    html = str(ansi_to_html(text))
    assert "\x1b" not in html
    assert "<b>" not in html  # still escaped


def test_a_quote_after_csi_is_escaped_text_not_a_raw_escape() -> None:
    assert str(ansi_to_html('a\x1b["b')) == "a"  # ESC [ " b: a CSI sequence ('"' intermediate)
    # no final byte: not a sequence, the ESC alone is dropped and the rest escaped
    assert str(ansi_to_html('\x1b[" & <')) == "[&#34; &amp; &lt;"


def test_the_task_page_shows_no_raw_escape(admin: LoggedIn, conn: psycopg.Connection[Any]) -> None:
    task_submit(conn, "b1", [{"command": "true"}])
    worker = worker_register(conn, "w1")
    execution = task_claim(conn, worker["id"], 1)[0]
    execution_append_output(
        conn, worker["id"], [(execution["execution_id"], 1, "stdout", 'before\x1b["after\n')]
    )
    page = admin.get(f"/tasks/{execution['task_id']}").get_data(as_text=True)
    assert "before" in page and "\x1b" not in page


@pytest.mark.parametrize(
    "target",
    [
        "/workers/\r\nSet-Cookie: x=1",
        "/x\nLocation: https://evil.example/",
        "/\\evil.example/",
        "/\\/evil.example",
        "/ok\x00",
    ],
)
def test_a_login_next_with_control_characters_or_backslashes_goes_home(
    app: Flask, add_user: Callable[[str, str], None], target: str
) -> None:
    add_user("alice", "admin")
    client = app.test_client()
    assert client.get("/login", query_string={"next": target}).status_code == 200
    response = client.post(
        "/login",
        data={"name": "alice", "password": PASSWORD, "csrf_token": csrf_of(client), "next": target},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert "x=1" not in str(response.headers) and "evil" not in str(response.headers)


@pytest.mark.parametrize(
    "referrer",
    [
        "https://evil.example/batches/",
        "http://evil.example/",
        "//evil.example/x",
        "http://localhost:81/batches/",
        "https://localhost/batches/",
        "javascript:alert(1)",
    ],
)
def test_batch_actions_never_redirect_off_site(
    admin: LoggedIn, conn: psycopg.Connection[Any], referrer: str
) -> None:
    task_submit(conn, "b1", [{"command": "true"}])
    response = admin.post("/batches/b1/pause", htmx=False, headers={"Referer": referrer})
    assert response.status_code == 303
    assert response.headers["Location"] == "/batches/"


def test_batch_actions_go_back_to_the_page_of_this_site(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    task_submit(conn, "b1", [{"command": "true"}])
    back = "http://localhost/tasks/?batch=b1&status=pending"
    response = admin.post("/batches/b1/pause", htmx=False, headers={"Referer": back})
    assert response.headers["Location"] == "/tasks/?batch=b1&status=pending"
    # a path starting with // would be another host to the browser: made local
    response = admin.post(
        "/batches/b1/resume", htmx=False, headers={"Referer": "http://localhost//evil.example/x"}
    )
    assert response.headers["Location"] == "/evil.example/x"


def test_pages_are_never_cached_but_static_files_are(admin: LoggedIn, app: Flask) -> None:
    for path in ["/", "/batches/", "/tasks/", "/workers/", "/cloud/", "/login"]:
        assert admin.get(path).headers["Cache-Control"] == "no-store", path
    assert app.test_client().get("/login").headers["Cache-Control"] == "no-store"
    static = app.test_client().get("/static/htmx-2.0.11.min.js")
    assert "no-store" not in static.headers.get("Cache-Control", "")
    static.close()


def _login_cookie(app: Flask, base_url: str, headers: dict[str, str] | None = None) -> str:
    client = app.test_client()
    page = client.get("/login", base_url=base_url, headers=headers)
    token = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post(
        "/login",
        base_url=base_url,
        headers=headers,
        data={"name": "alice", "password": PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    cookie: str = response.headers["Set-Cookie"]
    return cookie


def test_the_session_cookie_is_secure_over_https_or_behind_a_proxy_that_says_so(
    db: str, add_user: Callable[[str, str], None]
) -> None:
    add_user("alice", "admin")
    https = {"X-Forwarded-Proto": "https"}
    for hops, base_url, headers, secure in (
        (0, "http://localhost", None, False),
        (0, "https://localhost", None, True),
        (0, "http://localhost", https, False),  # a header nobody vouches for
        (1, "http://localhost", https, True),
        (1, "http://localhost", None, False),
    ):
        app = make_app(db, trusted_proxies=hops)
        try:
            cookie = _login_cookie(app, base_url, headers)
        finally:
            web_db.close(app)
        attributes = [part.strip().lower() for part in cookie.split(";")]
        assert ("secure" in attributes) is secure, (hops, base_url, headers, cookie)
        assert "httponly" in attributes and "samesite=lax" in attributes
        assert any(part.startswith("expires=") for part in attributes)
