"""Every state-changing route of the dashboard, read from the app's URL map: without a
session it is refused, with a session but no (or a wrong) CSRF token it is refused,
and the database is unchanged. tests/web/test_auth.py shows the same on examples."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from flask import Flask

from scitq.db.task import task_submit
from scitq.db.web_user import web_user_set
from scitq.db.worker import worker_register
from scitq.web import db as web_db
from scitq.web.auth import hash_password
from tests.badinput.snapshot import snapshot
from tests.web.conftest import PASSWORD, log_in, make_app

pytestmark = pytest.mark.sql


def _post_paths(app: Flask, ids: dict[str, str]) -> list[str]:
    """One concrete path per POST rule (the login form excepted: it makes the session)."""
    paths = []
    for rule in app.url_map.iter_rules():
        if "POST" not in (rule.methods or ()) or rule.rule == "/login":
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", lambda m: ids.get(m[1], "x"), rule.rule)
        paths.append(path)
    return paths


@pytest.fixture
def setup(db: str, conn: psycopg.Connection[Any]) -> Any:
    task_submit(conn, "b", [{"command": "true"}])
    worker = worker_register(conn, "w1", batches=["b"])["id"]
    web_user_set(conn, "alice", hash_password(PASSWORD), "admin")
    app = make_app(db)
    ids = {"task_id": "1", "worker_id": str(worker), "name": "b", "action": "pause"}
    yield app, _post_paths(app, ids)
    web_db.close(app)


def test_the_dashboard_has_actions_to_check(setup: Any) -> None:
    _, paths = setup
    assert {"/batches/b/pause", "/tasks/1/pause", "/workers/1/pause", "/logout"} <= set(paths)


def test_every_action_needs_a_session(conn: psycopg.Connection[Any], setup: Any) -> None:
    app, paths = setup
    before = snapshot(conn)
    client = app.test_client()
    for path in paths:
        for headers in ({}, {"HX-Request": "true"}):
            response = client.post(path, headers=headers, data={"concurrency": "5"})
            assert response.status_code in (302, 400, 401, 403), (path, response.status_code)
            if response.status_code == 302:
                assert "/login" in response.headers["Location"], path
    assert snapshot(conn) == before


@pytest.mark.parametrize("token", [None, "", "forged-token", "0" * 64])
def test_every_action_needs_the_sessions_csrf_token(
    conn: psycopg.Connection[Any], setup: Any, token: str | None
) -> None:
    app, paths = setup
    user = log_in(app.test_client(), "alice")
    before = snapshot(conn)
    for path in paths:
        headers = {"HX-Request": "true"}
        data: dict[str, str] = {"concurrency": "5"}
        if token is not None:
            headers["X-CSRF-Token"] = token
            data["csrf_token"] = token
        response = user.client.post(path, headers=headers, data=data)
        assert response.status_code in (400, 403), (path, response.status_code)
    assert snapshot(conn) == before
    # and the real token works, so the refusals above were about the token
    assert user.post("/batches/b/pause").status_code in (200, 204, 302)
    assert conn.execute("SELECT is_paused FROM scitq.batch").fetchone() == (True,)


def test_actions_are_never_done_on_get(conn: psycopg.Connection[Any], setup: Any) -> None:
    app, paths = setup
    user = log_in(app.test_client(), "alice")
    before = snapshot(conn)
    for path in paths:
        assert user.get(path).status_code in (404, 405), path
    assert snapshot(conn) == before
