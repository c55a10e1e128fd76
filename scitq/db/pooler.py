"""Connection poolers (PgBouncer) between scitq and PostgreSQL.

Behind a pooler in transaction mode each transaction runs on whichever server connection
is free, so nothing may outlive a transaction: no server-side prepared statement (psycopg
prepares a statement after five runs on one connection: the next server connection does
not have it, ``prepared statement "_pg3_0" does not exist``), no LISTEN (the
notifications go to a server connection nobody reads), no session advisory lock (the
scheduler's would stay on a pooled connection, and a second scheduler landing on it
would take it again). A pooler is recognised by its cancel keys: it answers each client
with a key of its own, so the backend pid that libpq reports is not the pid of the
server process (`pg_backend_pid()`). scitq's own TLS relay (`scitq db serve`) forwards
the server's key unchanged.
"""

from __future__ import annotations

import logging

from scitq.db.query import AsyncConnection, Connection, Params, named_query, scalar

logger = logging.getLogger(__name__)


@named_query(scalar("pid", int), prepare=False)
def session_backend_pid() -> Params:
    """The pid of the server process running this transaction."""
    return {}


def behind_pooler(conn: Connection) -> bool:
    """Whether a connection pooler sits between ``conn`` and the server (one round trip)."""
    return session_backend_pid(conn) != conn.info.backend_pid


async def behind_pooler_async(conn: AsyncConnection) -> bool:
    """`behind_pooler` for an asynchronous connection."""
    return await session_backend_pid.run_async(conn) != conn.info.backend_pid


def fit_for_pooler(conn: Connection) -> None:
    """Turn server-side prepared statements off on ``conn`` if it goes through a pooler.

    For connections that live long and repeat their queries (the `scitq.Client`, the
    dashboard's pool); on a direct connection psycopg keeps preparing what runs often.
    """
    if behind_pooler(conn):
        conn.prepare_threshold = None
        logger.debug("behind a connection pooler: no prepared statements",
                     extra={"action": "pooler_detected"})  # fmt: skip
