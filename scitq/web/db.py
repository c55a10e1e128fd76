"""The database for the web app: a pool per app, one connection per request (on ``g``),
returned when the request ends (the flaskr ``get_db`` pattern)."""

from __future__ import annotations

from typing import Any

import psycopg
from flask import Flask, current_app, g
from psycopg_pool import ConnectionPool

from scitq.config import Settings
from scitq.db.connection import translated
from scitq.embedded import conninfo_for

POOL_KEY = "scitq.pool"


def init_app(app: Flask, settings: Settings) -> None:
    """Open the app's pool (connections made lazily) and return connections after use."""
    conninfo = conninfo_for(settings.database)
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        conninfo,
        min_size=1,
        max_size=max(1, settings.web.threads),
        kwargs={"autocommit": True, "application_name": "scitq-web"},
        open=False,
        name="scitq-web",
    )
    pool.open(wait=False)
    app.extensions[POOL_KEY] = pool
    app.teardown_appcontext(_release)


def close(app: Flask) -> None:
    """Close the app's pool (tests, and `scitq web` on exit)."""
    pool: ConnectionPool[Any] | None = app.extensions.pop(POOL_KEY, None)
    if pool is not None:
        pool.close()


def get_conn() -> psycopg.Connection[Any]:
    """This request's connection (autocommit: each action is its own transaction)."""
    if "scitq_conn" not in g:
        pool: ConnectionPool[psycopg.Connection[Any]] = current_app.extensions[POOL_KEY]
        with translated():
            g.scitq_conn = pool.getconn(timeout=10)
    conn: psycopg.Connection[Any] = g.scitq_conn
    return conn


def _release(_exc: BaseException | None) -> None:
    conn = g.pop("scitq_conn", None)
    if conn is not None:
        current_app.extensions[POOL_KEY].putconn(conn)
