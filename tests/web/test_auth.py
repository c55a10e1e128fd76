"""Logins, roles, CSRF, sessions, the secret key and trusted-header mode."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask

from scitq.config import WebSettings
from scitq.db.report import batch_progress
from scitq.db.task import task_get, task_submit
from scitq.db.web_user import web_user_delete, web_user_get, web_user_set
from scitq.db.worker import worker_list, worker_register
from scitq.errors import ConfigError, InvalidArgument
from scitq.web import db as web_db
from scitq.web.secret import secret_key
from tests.web.conftest import PASSWORD, LoggedIn, csrf_of, log_in, make_app

PAGES = ["/", "/batches/", "/tasks/", "/tasks/1", "/workers/", "/cloud/"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_login(app: Flask, path: str) -> None:
    client = app.test_client()
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    # htmx gets a 401 and an HX-Redirect instead of the login page in a fragment
    response = client.get(path, headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_login_page_and_static_files_need_no_login(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/login").status_code == 200
    response = client.get("/static/htmx-2.0.11.min.js")
    assert response.status_code == 200
    assert b"htmx" in response.data[:2000]
    response.close()


def test_wrong_password_and_unknown_user_are_refused_alike(
    app: Flask, add_user: Callable[[str, str], None]
) -> None:
    add_user("alice", "admin")
    client = app.test_client()
    token = csrf_of(client)
    for name, password in (("alice", "wrong password"), ("nobody", PASSWORD)):
        response = client.post(
            "/login", data={"name": name, "password": password, "csrf_token": token}
        )
        assert response.status_code == 401
        assert "Unknown user or wrong password." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302  # still not logged in


def test_login_goes_to_next_page_records_the_login_and_logout_ends_it(
    app: Flask, add_user: Callable[[str, str], None], conn: psycopg.Connection[Any]
) -> None:
    add_user("alice", "admin")
    client = app.test_client()
    token = csrf_of(client)
    response = client.post(
        "/login",
        data={"name": "alice", "password": PASSWORD, "csrf_token": token, "next": "/workers/"},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/workers/"
    user = web_user_get(conn, "alice")
    assert user is not None and user["last_login_at"] is not None
    assert client.get("/workers/").status_code == 200
    new_token = csrf_of(client, "/")
    assert new_token != token  # renewed at login
    response = client.post("/logout", headers={"X-CSRF-Token": new_token})
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_login_never_redirects_to_another_site(
    app: Flask, add_user: Callable[[str, str], None]
) -> None:
    add_user("alice", "admin")
    client = app.test_client()
    token = csrf_of(client)
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = client.post(
            "/login",
            data={"name": "alice", "password": PASSWORD, "csrf_token": token, "next": target},
        )
        assert response.headers["Location"] == "/", target
        token = csrf_of(client, "/")


def test_login_without_csrf_token_is_refused(
    app: Flask, add_user: Callable[[str, str], None]
) -> None:
    add_user("alice", "admin")
    client = app.test_client()
    client.get("/login")
    response = client.post("/login", data={"name": "alice", "password": PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_post_without_or_with_a_wrong_csrf_token_changes_nothing(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    task_submit(conn, "b1", [{"command": "true"}])
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        response = admin.client.post("/batches/b1/pause", headers=headers)
        assert response.status_code == 400
    assert batch_progress(conn, "b1")[0]["is_paused"] is False
    # the right token works
    assert admin.post("/batches/b1/pause").status_code == 200
    assert batch_progress(conn, "b1")[0]["is_paused"] is True


def test_a_token_from_another_session_is_refused(
    app: Flask, admin: LoggedIn, add_user: Callable[[str, str], None], conn: psycopg.Connection[Any]
) -> None:
    task_submit(conn, "b1", [{"command": "true"}])
    add_user("bob", "admin")
    bob = log_in(app.test_client(), "bob")
    response = bob.client.post("/batches/b1/pause", headers={"X-CSRF-Token": admin.token})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "path",
    ["/batches/b1/pause", "/tasks/1/cancel", "/workers/1/set", "/workers/1/delete"],
)
def test_a_viewer_can_look_but_not_act(
    viewer: LoggedIn, conn: psycopg.Connection[Any], path: str
) -> None:
    task_submit(conn, "b1", [{"command": "true"}])
    worker_register(conn, "w1")
    for page in PAGES:
        assert viewer.get(page).status_code == 200, page
    response = viewer.post(path, data={"concurrency": "5"})
    assert response.status_code == 403
    assert "viewers may look but not act" in response.get_data(as_text=True)
    assert batch_progress(conn, "b1")[0]["is_paused"] is False
    assert task_get(conn, 1)["status"] == "pending"  # type: ignore[index]
    assert [w["concurrency"] for w in queries_worker_rows(conn)] == [1]
    # no action buttons are shown to viewers
    assert "hx-post" not in viewer.get("/batches/").get_data(as_text=True)


def queries_worker_rows(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:

    return worker_list(conn)


def test_a_deleted_user_is_logged_out_and_a_demoted_one_loses_actions(
    app: Flask, admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    task_submit(conn, "b1", [{"command": "true"}])
    web_user_set(conn, "alice", web_user_get(conn, "alice")["password_hash"],  # type: ignore[index]
                           "viewer")  # fmt: skip
    # the new role ended the session: log in again, as a viewer now
    assert admin.post("/batches/b1/pause").status_code == 401
    assert batch_progress(conn, "b1")[0]["is_paused"] is False
    again = log_in(app.test_client(), "alice")
    assert again.post("/batches/b1/pause").status_code == 403
    web_user_delete(conn, "alice")
    assert again.get("/").status_code == 302


def test_trusted_header_mode(db: str, add_user: Callable[[str, str], None]) -> None:
    add_user("carol", "admin")
    app = make_app(db, trusted_header="X-Remote-User")
    try:
        client = app.test_client()
        assert client.get("/").status_code == 403  # no header: nobody
        assert client.get("/", headers={"X-Remote-User": "mallory"}).status_code == 403
        response = client.get("/", headers={"X-Remote-User": "carol"})
        assert response.status_code == 200
        assert "carol" in response.get_data(as_text=True)
        # a password login is not possible in this mode
        assert client.get("/login", headers={"X-Remote-User": "carol"}).status_code == 302
    finally:
        web_db.close(app)


def test_without_trusted_header_mode_the_header_is_ignored(
    app: Flask, add_user: Callable[[str, str], None]
) -> None:
    add_user("carol", "admin")
    assert app.test_client().get("/", headers={"X-Remote-User": "carol"}).status_code == 302


def test_secret_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = WebSettings(secret_key_file=tmp_path / "sub" / "key")
    key = secret_key(settings)
    assert len(key) == 64
    assert os.stat(settings.secret_key_file).st_mode & 0o777 == 0o600
    assert secret_key(settings) == key
    assert secret_key(WebSettings(secret_key="k" * 40, secret_key_file=tmp_path / "x")) == "k" * 40
    settings.secret_key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        secret_key(settings)


def test_user_names_and_roles_are_checked_by_the_database(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(InvalidArgument, match="invalid role"):
        web_user_set(conn, "dave", "scrypt:1:2:3$salt$abcdef", "root")
    with pytest.raises(InvalidArgument, match="hashed"):
        web_user_set(conn, "dave", "plain password", "admin")
    with pytest.raises(InvalidArgument, match="invalid user name"):
        web_user_set(conn, "", "scrypt:1:2:3$salt$abcdef", "admin")
    row = web_user_set(conn, "dave", "scrypt:1:2:3$salt$abcdef", "admin")
    assert row["created"] is True
    assert web_user_set(conn, "dave", "scrypt:1:2:3$salt$abcdef", "viewer")["created"] is False


def test_answers_forbid_framing_sniffing_and_foreign_scripts(app: Flask) -> None:
    response = app.test_client().get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "<script>" not in response.get_data(as_text=True)  # no inline script to allow
