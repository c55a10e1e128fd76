"""Fixtures of the dashboard tests: an app on this test's database, users, logged-in
clients (the Flask tutorial's ``app``/``client`` fixtures)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

from scitq.cli import scitq
from scitq.config import DatabaseSettings, Settings, WebSettings
from scitq.db.web_user import web_user_set
from scitq.web import create_app
from scitq.web import db as web_db
from scitq.web.auth import hash_password

PASSWORD = "correct horse battery"
SECRET = "s" * 64


def make_app(db: str, **web: Any) -> Flask:
    settings = Settings(
        database=DatabaseSettings(url=db), web=WebSettings(secret_key=SECRET, threads=2, **web)
    )
    return create_app(settings, TESTING=True)


@pytest.fixture
def app(db: str) -> Iterator[Flask]:
    application = make_app(db)
    yield application
    web_db.close(application)


@pytest.fixture
def add_user(conn: psycopg.Connection[Any]) -> Callable[[str, str], None]:
    def add(name: str, role: str) -> None:
        web_user_set(conn, name, hash_password(PASSWORD), role)

    return add


def csrf_of(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token of the client's session, read from a page."""
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found[1]


class LoggedIn:
    """A test client logged in as a user; ``post`` sends the CSRF token as htmx does."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.token = token

    def get(self, path: str, htmx: bool = False, **kwargs: Any) -> Any:
        headers = {"HX-Request": "true"} if htmx else {}
        return self.client.get(path, headers=headers, **kwargs)

    def post(self, path: str, htmx: bool = True, **kwargs: Any) -> Any:
        headers = {**kwargs.pop("headers", {}), "X-CSRF-Token": self.token}
        if htmx:
            headers["HX-Request"] = "true"
        return self.client.post(path, headers=headers, **kwargs)


def log_in(client: FlaskClient, name: str) -> LoggedIn:
    token = csrf_of(client)
    response = client.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return LoggedIn(client, csrf_of(client, "/"))


@pytest.fixture
def admin(app: Flask, add_user: Callable[[str, str], None]) -> LoggedIn:
    add_user("alice", "admin")
    return log_in(app.test_client(), "alice")


@pytest.fixture
def viewer(app: Flask, add_user: Callable[[str, str], None]) -> LoggedIn:
    add_user("victor", "viewer")
    return log_in(app.test_client(), "victor")


@pytest.fixture
def invoke(db: str) -> Callable[..., Result]:
    """Run ``scitq --database-url <test db> ARGS...`` in-process."""

    def run(*args: str, **kwargs: Any) -> Result:
        return CliRunner().invoke(scitq, ["--database-url", db, *args], **kwargs)

    return run
