"""One active scheduler per database: a session-level advisory lock on its own connection.

The active scheduler holds `SCHEDULER_LOCK` for as long as its lock connection lives;
PostgreSQL releases it when that session ends, however the process died. Standby
schedulers try to take it every few seconds. Each duty's transaction first checks that
the lock is still held by the active scheduler's session (`scheduler_lock_held`), so a
scheduler whose lock connection broke stops acting before a standby takes over.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from scitq.db.connection import connect
from scitq.db.pooler import behind_pooler
from scitq.db.scheduler import (
    scheduler_lock_held,
    scheduler_lock_holder,
    scheduler_lock_release,
    scheduler_lock_try,
)
from scitq.errors import ConfigError, DatabaseError

logger = logging.getLogger(__name__)

#: Advisory lock key of the active scheduler (the migrations use 0x5C17_0001).
SCHEDULER_LOCK = 0x5C17_0002

#: libpq options of the scheduler's connections: give up connecting after 10 s, and
#: notice a dead peer within about 15 s instead of the system's two hours.
CONNECTION_OPTIONS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "15000",
}


class LeadershipLost(DatabaseError):
    """This scheduler no longer holds the scheduler lock: it must stop acting."""


def scheduler_conninfo(conninfo: str) -> str:
    """``conninfo`` with the scheduler's connection options (timeouts, keepalives)."""
    return make_conninfo(conninfo, **CONNECTION_OPTIONS)


def open_connection(conninfo: str, application_name: str) -> psycopg.Connection[Any]:
    """An autocommit connection for the scheduler (errors translated)."""
    return connect(scheduler_conninfo(conninfo), application_name=application_name)


class SchedulerLock:
    """The scheduler lock and the dedicated connection that holds it.

    Used by one thread at a time: the main thread while standing by, the leadership check
    while active.
    """

    def __init__(self, conninfo: str, application_name: str) -> None:
        self._conninfo = conninfo
        self._application_name = application_name
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not (self._conn.closed or self._conn.broken)

    @property
    def pid(self) -> int:
        """The backend process id of the lock's session."""
        return self._connection().info.backend_pid

    def connect(self) -> None:
        """Open the lock connection (a `DatabaseError` if the database is unreachable).

        Raises:
            ConfigError: the connection goes through a connection pooler, which cannot
                keep a session advisory lock (it would stay on a pooled server connection
                that a second scheduler could land on and take again).
        """
        self.close()
        conn = open_connection(self._conninfo, self._application_name)
        try:
            pooled = behind_pooler(conn)
        except BaseException:
            conn.close()
            raise
        if pooled:
            conn.close()
            raise ConfigError(
                "the scheduler's database connection goes through a connection pooler "
                "(PgBouncer?): its lock needs a session of its own; connect the scheduler "
                "to PostgreSQL directly (agents may stay behind the pooler)"
            )
        self._conn = conn

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this session holds it."""
        return scheduler_lock_try(self._connection(), SCHEDULER_LOCK)

    def holder(self) -> dict[str, Any] | None:
        """The ``pid`` and ``application_name`` of the session holding the lock, if any."""
        return scheduler_lock_holder(self._connection(), SCHEDULER_LOCK)

    def still_held(self) -> bool:
        """Whether this session is alive and holds the lock; False on any error."""
        try:
            conn = self._connection()
            return scheduler_lock_held(conn, SCHEDULER_LOCK, conn.info.backend_pid)
        except DatabaseError as exc:
            message = " ".join(str(exc).split())
            logger.warning(
                "scheduler lock check failed: %s", message, extra={"action": "lock_check_failed"}
            )
            return False

    def release(self) -> None:
        """Release the lock (ending the session releases it too)."""
        with contextlib.suppress(DatabaseError):
            scheduler_lock_release(self._connection(), SCHEDULER_LOCK)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            raise DatabaseError("the scheduler lock connection is closed")
        return self._conn
