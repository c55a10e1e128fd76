"""Password guessing is throttled per user name and per client address (issue 15, point
3): a few free failures, a back-off, then a lock-out window; every attempt recorded, the
refusals logged; trusted-header mode is unaffected."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from scitq.db.web_session import web_login_attempt, web_session_start
from scitq.web import db as web_db
from tests.web.conftest import PASSWORD, csrf_of, make_app

FREE, LOCKOUT, WINDOW = 5, 20, 900


def _try(client: FlaskClient, name: str, password: str, token: str) -> Any:
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token})


def _client_at(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _outcomes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute("SELECT outcome, count(*) FROM scitq.web_login_attempt GROUP BY 1")
    return dict(rows.fetchall())


def test_forty_wrong_passwords_then_the_right_one_is_refused(
    app: Flask,
    add_user: Callable[[str, str], None],
    conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    add_user("alice", "admin")
    client = app.test_client()
    token = csrf_of(client)
    statuses = []
    with caplog.at_level(logging.INFO, logger="scitq.web.auth"):
        for attempt in range(40):
            statuses.append(_try(client, "alice", f"guess {attempt}", token).status_code)
        response = _try(client, "alice", PASSWORD, token)
    assert statuses[:FREE] == [401] * FREE  # free failures
    assert statuses[-1] == 429 and set(statuses[FREE:]) <= {401, 429}
    assert response.status_code == 429  # the right password, too late
    assert int(response.headers["Retry-After"]) > 60  # locked out, not a second's back-off
    assert "Too many failed logins" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302  # not logged in
    outcomes = _outcomes(conn)
    assert sum(outcomes.values()) == 41 and "succeeded" not in outcomes
    refused = [r for r in caplog.records if getattr(r, "action", None) == "login_throttled"]
    assert refused and refused[-1].levelno == logging.WARNING
    assert "lockout" in refused[-1].getMessage() and "alice" in refused[-1].getMessage()
    for record in caplog.records:
        assert PASSWORD not in record.getMessage() and "guess" not in record.getMessage()


def test_one_address_trying_many_names_is_throttled(
    app: Flask, add_user: Callable[[str, str], None]
) -> None:
    add_user("alice", "admin")
    attacker = _client_at(app, "198.51.100.9")
    token = csrf_of(attacker)
    for number in range(30):
        _try(attacker, f"user{number}", "password", token)
    # alice has no failure of her own, but this address has too many
    assert _try(attacker, "alice", PASSWORD, token).status_code == 429
    # from another address she logs in
    other = _client_at(app, "198.51.100.10")
    assert _try(other, "alice", PASSWORD, csrf_of(other)).status_code == 302


def test_a_guessed_user_is_locked_from_every_address_but_others_are_not(
    app: Flask, add_user: Callable[[str, str], None]
) -> None:
    add_user("alice", "admin")
    add_user("bob", "admin")
    for number in range(25):  # a different address for each guess (a botnet)
        client = _client_at(app, f"203.0.113.{number}")
        _try(client, "alice", "guess", csrf_of(client))
    client = _client_at(app, "192.0.2.50")
    token = csrf_of(client)
    assert _try(client, "alice", PASSWORD, token).status_code == 429
    assert _try(client, "bob", PASSWORD, token).status_code == 302


def test_back_off_then_lock_out_then_the_window_passes(
    conn: psycopg.Connection[Any], add_user: Callable[[str, str], None]
) -> None:
    add_user("alice", "admin")
    t0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

    def attempt(seconds: float, address: str = "192.0.2.1") -> dict[str, Any]:
        now = t0 + timedelta(seconds=seconds)
        return web_login_attempt(conn, "alice", address, FREE, LOCKOUT, WINDOW, now=now)

    for second in range(FREE):
        assert attempt(second)["allowed"] is True
    refused = attempt(4.5)  # the 6th, half a second after the 5th failure: wait 1 s
    assert (refused["allowed"], refused["reason"], refused["retry_after"]) == (False, "backoff", 1)
    # the refusal counts (6 now): 2 s after it, not after the last failure
    assert attempt(6)["reason"] == "backoff"
    assert attempt(10.1)["allowed"] is True  # 7 counted: 4 s after the previous attempt
    second_wait = attempt(10.5)  # 8 counted: 8 s after the previous one
    assert second_wait["reason"] == "backoff" and second_wait["retry_after"] == 8
    for step in range(20):  # hammering during the back-off reaches the lock-out
        last = attempt(11 + step / 10)
    assert (last["allowed"], last["reason"]) == (False, "lockout")
    assert last["user_failures"] >= LOCKOUT
    assert WINDOW - 1 <= last["retry_after"] <= WINDOW
    # still locked a minute before the window has passed since the last attempt...
    assert attempt(12.9 + WINDOW - 60)["reason"] == "lockout"
    # ... that attempt included: once they have all aged out, free again
    assert attempt(12.9 + 2 * WINDOW)["allowed"] is True


def test_a_success_resets_the_user_count(
    conn: psycopg.Connection[Any], add_user: Callable[[str, str], None]
) -> None:
    add_user("alice", "admin")
    t0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    for second in range(FREE):
        web_login_attempt(
            conn,
            "alice",
            f"192.0.2.{second}",
            FREE,
            LOCKOUT,
            WINDOW,
            now=t0 + timedelta(seconds=second),
        )
    good = web_login_attempt(
        conn, "alice", "192.0.2.99", FREE, LOCKOUT, WINDOW, now=t0 + timedelta(seconds=10)
    )
    assert good["allowed"] is True and good["user_failures"] == FREE
    web_session_start(
        conn, "token", "alice", good["attempt_id"], "192.0.2.99", now=t0 + timedelta(seconds=10)
    )
    after = web_login_attempt(
        conn, "alice", "192.0.2.98", FREE, LOCKOUT, WINDOW, now=t0 + timedelta(seconds=11)
    )
    assert after["allowed"] is True and after["user_failures"] == 0


def test_the_client_address_is_the_proxy_s_only_when_trusted(
    db: str, conn: psycopg.Connection[Any], add_user: Callable[[str, str], None]
) -> None:
    add_user("alice", "admin")
    forwarded = {"X-Forwarded-For": "203.0.113.77"}
    for hops, expected in ((0, "127.0.0.1"), (1, "203.0.113.77")):
        app = make_app(db, trusted_proxies=hops)
        try:
            client = app.test_client()
            token = csrf_of(client)
            client.post(
                "/login",
                headers=forwarded,
                data={"name": "alice", "password": "wrong", "csrf_token": token},
            )
        finally:
            web_db.close(app)
        row = conn.execute(
            "SELECT address FROM scitq.web_login_attempt ORDER BY id DESC LIMIT 1"
        ).fetchone()
        assert row == (expected,), hops


def test_trusted_header_mode_is_not_throttled(
    db: str, conn: psycopg.Connection[Any], add_user: Callable[[str, str], None]
) -> None:
    add_user("carol", "admin")
    for _ in range(LOCKOUT + 5):  # carol's name is locked for password logins
        web_login_attempt(conn, "carol", "127.0.0.1", FREE, LOCKOUT, WINDOW)
    app = make_app(db, trusted_header="X-Remote-User")
    try:
        client = app.test_client()
        for _ in range(3):
            assert client.get("/", headers={"X-Remote-User": "carol"}).status_code == 200
        assert client.post("/login", headers={"X-Remote-User": "carol"}).status_code in (400, 302)
    finally:
        web_db.close(app)
