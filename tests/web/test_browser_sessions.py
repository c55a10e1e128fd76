"""Sessions in Debian's Chromium (issue 15, points 2 and 7): after `Log out`, the cookie
copied from the browser opens nothing in another browser, and Back does not show the
dashboard from a cache. Skipped like tests/web/test_browser.py without Chromium."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from scitq.db.web_user import web_user_set
from scitq.web.auth import hash_password
from tests.web.test_browser import PASSWORD, browser, server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_logout_ends_the_session_for_every_copy_of_the_cookie(
    browser: Any,  # noqa: F811
    server: str,  # noqa: F811
    conn: psycopg.Connection[Any],
) -> None:
    web_user_set(conn, "alice", hash_password(PASSWORD), "admin")
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server}/workers/")
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/workers/")
    copied = [cookie for cookie in context.cookies() if cookie["name"] == "scitq_session"]
    assert copied and copied[0]["httpOnly"] is True
    assert copied[0]["secure"] is False  # plain HTTP on the loopback
    # a second browser with the copied cookie is logged in while the session lives
    thief = browser.new_context()
    thief.add_cookies(copied)
    other = thief.new_page()
    other.goto(f"{server}/batches/")
    assert other.url == f"{server}/batches/"

    page.click("text=Log out")
    page.wait_for_url(f"{server}/login")
    # Back: the page is fetched again (no-store), and the server sends to the login page
    page.go_back()
    page.wait_for_load_state()
    assert "/login" in page.url and "Log in to scitq" in page.content()
    # the copy is worth nothing now, and stays so
    for path in ("/", "/batches/"):
        other.goto(f"{server}{path}")
        assert "/login" in other.url, path
    thief.close()
    context.close()
