"""The database for the web app: a pool per app, one connection per request (on ``g``),
returned when the request ends (the flaskr ``get_db`` pattern).

With a read replica configured (``[database] read_url``) the heavy report pages (the
overview, the batches and the task list) read through a second pool on it
(`get_report_conn`); while it does not answer they read from the primary, which the log
says once. Pooled connections are checked when taken, so that those of a server that
died or was failed over are replaced instead of failing a request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from flask import Flask, current_app, g
from psycopg_pool import ConnectionPool, PoolTimeout

from scitq.config import Settings
from scitq.db.connection import translated
from scitq.db.pooler import fit_for_pooler
from scitq.embedded import conninfo_for

logger = logging.getLogger(__name__)

POOL_KEY = "scitq.pool"
READ_POOL_KEY = "scitq.read_pool"
#: How long a request waits for a connection of the read replica before using the primary.
REPLICA_WAIT_SECONDS = 2.0
#: After that, how long requests use the primary before trying the replica again.
REPLICA_RETRY_SECONDS = 30.0


class _Replica:
    """The read replica's pool and whether it answers."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        self.pool = pool
        self.down_until = 0.0
        self.fell_back = False


def _pool(conninfo: str, size: int, name: str) -> ConnectionPool[psycopg.Connection[Any]]:
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        conninfo,
        min_size=1,
        max_size=max(1, size),
        kwargs={"autocommit": True, "application_name": name},
        configure=fit_for_pooler,  # behind PgBouncer: no prepared statements
        open=False,
        name=name,
        check=ConnectionPool.check_connection,
    )
    pool.open(wait=False)
    return pool


def init_app(app: Flask, settings: Settings) -> None:
    """Open the app's pools (connections made lazily) and return connections after use."""
    conninfo = conninfo_for(settings.database)
    app.extensions[POOL_KEY] = _pool(conninfo, settings.web.threads, "scitq-web")
    read_url = settings.database.read_url
    if read_url and read_url != conninfo:
        app.extensions[READ_POOL_KEY] = _Replica(
            _pool(read_url, settings.web.threads, "scitq-web-reports")
        )
    app.teardown_appcontext(_release)


def close(app: Flask) -> None:
    """Close the app's pools (tests, and `scitq web` on exit)."""
    pool: ConnectionPool[Any] | None = app.extensions.pop(POOL_KEY, None)
    if pool is not None:
        pool.close()
    replica: _Replica | None = app.extensions.pop(READ_POOL_KEY, None)
    if replica is not None:
        replica.pool.close()


def get_conn() -> psycopg.Connection[Any]:
    """This request's connection (autocommit: each action is its own transaction)."""
    if "scitq_conn" not in g:
        pool: ConnectionPool[psycopg.Connection[Any]] = current_app.extensions[POOL_KEY]
        with translated():
            g.scitq_conn = pool.getconn(timeout=10)
    conn: psycopg.Connection[Any] = g.scitq_conn
    return conn


def get_report_conn() -> psycopg.Connection[Any]:
    """This request's connection for reading reports: the read replica's when one is
    configured and answers, else the primary's (`get_conn`). Never for writes."""
    if "scitq_report_conn" in g:
        conn: psycopg.Connection[Any] = g.scitq_report_conn
        return conn
    replica: _Replica | None = current_app.extensions.get(READ_POOL_KEY)
    if replica is None or time.monotonic() < replica.down_until:
        return get_conn()
    try:
        g.scitq_report_conn = replica.pool.getconn(timeout=REPLICA_WAIT_SECONDS)
    except (PoolTimeout, psycopg.Error) as exc:
        replica.down_until = time.monotonic() + REPLICA_RETRY_SECONDS
        if not replica.fell_back:
            replica.fell_back = True
            logger.warning(
                "the read replica does not answer (%s): reports read from the primary",
                " ".join(str(exc).split()), extra={"action": "replica_fallback"},
            )  # fmt: skip
        return get_conn()
    return get_report_conn()


def _release(_exc: BaseException | None) -> None:
    conn = g.pop("scitq_conn", None)
    if conn is not None:
        current_app.extensions[POOL_KEY].putconn(conn)
    report_conn = g.pop("scitq_report_conn", None)
    if report_conn is not None:
        current_app.extensions[READ_POOL_KEY].pool.putconn(report_conn)
