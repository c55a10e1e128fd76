"""Sessions kept on the server (issue 15, point 2): logout, a new password, a new role,
deleting the user and an admin's end-sessions end them at once, a copy of the cookie
included; the idle and absolute lifetimes are enforced by the database."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient

from scitq.db.web_session import (
    token_hash,
    web_session_end_user,
    web_session_list,
    web_session_start,
    web_session_touch,
)
from scitq.db.web_user import web_user_delete
from scitq.errors import NotFound
from scitq.web import db as web_db
from tests.web.conftest import PASSWORD, LoggedIn, csrf_of, log_in, make_app

COOKIE = "scitq_session"


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def _with_cookie(app: Flask, value: str) -> FlaskClient:
    """Another browser, holding a copy of a session cookie."""
    thief = app.test_client()
    thief.set_cookie(COOKIE, value)
    return thief


def test_a_cookie_copied_before_logout_opens_nothing_after(admin: LoggedIn, app: Flask) -> None:
    copied = _cookie(admin.client)
    assert _with_cookie(app, copied).get("/").status_code == 200  # the copy works while live
    assert admin.post("/logout", htmx=False).status_code == 302
    assert admin.get("/").status_code == 302
    thief = _with_cookie(app, copied)
    response = thief.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    # using it again does not revive it
    assert thief.get("/workers/").status_code == 302


def test_the_cookie_carries_only_the_session_token(
    admin: LoggedIn, app: Flask, conn: psycopg.Connection[Any]
) -> None:
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    content = serializer.loads(_cookie(admin.client))
    assert set(content) == {"t"}, content
    stored = conn.execute(
        "SELECT u.name FROM scitq.web_session s JOIN scitq.web_user u ON u.id = s.user_id "
        "WHERE s.id = %s AND s.ended_at IS NULL",
        (token_hash(content["t"]),),
    ).fetchall()
    assert stored == [("alice",)]  # the database keeps the hash, never the token
    assert content["t"].encode() not in b"".join(
        bytes(row[0]) for row in conn.execute("SELECT id FROM scitq.web_session")
    )


def test_a_new_password_ends_the_sessions_of_the_user(
    admin: LoggedIn, app: Flask, invoke: Callable[..., Result]
) -> None:
    copied = _cookie(admin.client)
    result = invoke("web", "create-user", "alice", "--role", "admin", input="a new password\n")
    assert result.exit_code == 0, result.output
    assert admin.get("/").status_code == 302
    assert _with_cookie(app, copied).get("/").status_code == 302
    # the new password works, the old one does not
    client = app.test_client()
    token = csrf_of(client)
    response = client.post(
        "/login", data={"name": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 401
    response = client.post(
        "/login", data={"name": "alice", "password": "a new password", "csrf_token": token}
    )
    assert response.status_code == 302


def test_a_deleted_then_recreated_user_does_not_get_the_old_sessions_back(
    admin: LoggedIn,
    app: Flask,
    conn: psycopg.Connection[Any],
    add_user: Callable[[str, str], None],
) -> None:
    copied = _cookie(admin.client)
    assert web_user_delete(conn, "alice") is True
    add_user("alice", "admin")  # same name, same password, a new user
    assert _with_cookie(app, copied).get("/").status_code == 302
    assert conn.execute("SELECT count(*) FROM scitq.web_session").fetchone() == (0,)


def test_an_admin_ends_every_session_of_a_user_at_once(
    app: Flask, add_user: Callable[[str, str], None], invoke: Callable[..., Result]
) -> None:
    add_user("alice", "admin")
    add_user("bob", "viewer")
    laptop, desktop = log_in(app.test_client(), "alice"), log_in(app.test_client(), "alice")
    bob = log_in(app.test_client(), "bob")
    listed = invoke("web", "sessions", "--json")
    assert listed.exit_code == 0, listed.output
    assert sorted(row["name"] for row in json.loads(listed.output)) == [
        "alice", "alice", "bob",
    ]  # fmt: skip
    assert _cookie(laptop.client) not in listed.output  # never the tokens
    result = invoke("web", "end-sessions", "alice")
    assert result.exit_code == 0, result.output
    assert "2 sessions of alice ended" in result.output
    assert laptop.get("/").status_code == 302
    assert desktop.get("/", htmx=True).status_code == 401
    assert bob.get("/").status_code == 200
    assert invoke("web", "end-sessions", "nobody").exit_code == 4


def test_idle_and_absolute_lifetimes(conn: psycopg.Connection[Any], add_user: Any) -> None:
    add_user("alice", "admin")
    idle, lifetime = 12 * 3600, 24 * 3600
    t0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    web_session_start(conn, "busy", "alice", None, "192.0.2.1", now=t0)
    web_session_start(conn, "idle", "alice", None, "192.0.2.1", now=t0)
    hours = [11, 22, 23.9]  # used every 11 hours: never idle
    for hour in hours:
        row = web_session_touch(conn, "busy", idle, lifetime, now=t0 + timedelta(hours=hour))
        assert row == {"name": "alice", "role": "admin"}, hour
    # ... but not beyond the absolute lifetime, used or not
    assert web_session_touch(conn, "busy", idle, lifetime, now=t0 + timedelta(hours=24)) is None
    assert web_session_touch(conn, "busy", idle, lifetime, now=t0 + timedelta(hours=24.1)) is None
    # 12 hours without use end the other one
    late = t0 + timedelta(hours=12, seconds=1)
    assert web_session_touch(conn, "idle", idle, lifetime, now=late) is None
    reasons = dict(conn.execute("SELECT id, end_reason FROM scitq.web_session").fetchall())
    assert {bytes(key): value for key, value in reasons.items()} == {
        token_hash("busy"): "expired",
        token_hash("idle"): "idle",
    }
    assert web_session_list(conn) == []


def test_the_app_applies_its_lifetimes(
    db: str, conn: psycopg.Connection[Any], add_user: Callable[[str, str], None]
) -> None:
    add_user("alice", "admin")
    app = make_app(db, session_idle_minutes=5, session_max_hours=1)
    try:
        user = log_in(app.test_client(), "alice")
        assert user.get("/").status_code == 200
        # six minutes pass without a request
        conn.execute("UPDATE scitq.web_session SET last_seen_at = last_seen_at - interval '6 min'")
        assert user.get("/").status_code == 302
        user = log_in(app.test_client(), "alice")
        # used a minute ago, but begun more than an hour ago
        conn.execute(
            "UPDATE scitq.web_session SET created_at = now() - interval '61 min', "
            "last_seen_at = now() - interval '1 min' WHERE ended_at IS NULL"
        )
        assert user.get("/").status_code == 302
        ended = conn.execute(
            "SELECT end_reason FROM scitq.web_session ORDER BY created_at"
        ).fetchall()
        assert ended == [("expired",), ("idle",)]
    finally:
        web_db.close(app)


def test_ending_the_sessions_of_an_unknown_user_is_refused(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        web_session_end_user(conn, "nobody")


def test_login_renews_the_token(app: Flask, add_user: Callable[[str, str], None]) -> None:
    add_user("alice", "admin")
    client = app.test_client()
    client.get("/login")
    before = _cookie(client)
    log_in(client, "alice")
    assert _cookie(client) != before
    # the anonymous token of before the login opens nothing
    assert _with_cookie(app, before).get("/").status_code == 302
