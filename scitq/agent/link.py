"""The agent's database connection, which survives outages.

A call on a lost connection raises `DatabaseUnavailable`; the next call reconnects.
`call_until_done` retries with back-off for the calls that must eventually get through
(finishing an execution, delivering output), while running tasks go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg

from scitq import errors
from scitq.agent.polling import Backoff
from scitq.db.connection import translate_error
from scitq.db.execution import pass_idle_limit
from scitq.db.query import Row, Statement, run_together

logger = logging.getLogger(__name__)

#: How long a report pass's transaction may wait for its client between statements
#: before the server ends it (a pass takes milliseconds: only a frozen agent waits).
PASS_IDLE_LIMIT_MS = 5000

P = ParamSpec("P")
R = TypeVar("R")
AsyncConnection = psycopg.AsyncConnection[Any]


class DatabaseUnavailable(errors.DatabaseError):
    """The database cannot be reached for now; the agent keeps running and retries."""


class DatabaseLink:
    """One asynchronous connection, reopened on demand after it breaks."""

    def __init__(self, conninfo: str, application_name: str = "scitq-agent") -> None:
        self._conninfo = conninfo
        self._application_name = application_name
        self._conn: AsyncConnection | None = None
        self._lock = asyncio.Lock()
        self.outage_started: float | None = None

    async def connection(self) -> AsyncConnection:
        async with self._lock:
            if self._conn is not None and not (self._conn.closed or self._conn.broken):
                return self._conn
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._conninfo,
                    autocommit=True,
                    application_name=self._application_name,
                    connect_timeout=5,
                    # over TCP, a server whose machine died (no RST) is noticed within about
                    # 15 s, not the system's minutes to hours: a failover is waited out
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=3,
                    tcp_user_timeout=15000,
                    # no server-side prepared statements: behind PgBouncer in transaction
                    # pooling the next call may land on another server connection, where
                    # "_pg3_0" does not exist (the agent's calls are one-line function
                    # calls: preparing them saved nothing)
                    prepare_threshold=None,
                )
            except psycopg.Error as exc:
                raise DatabaseUnavailable(str(translate_error(exc))) from exc
            if self.outage_started is not None:
                logger.info("database reachable again", extra={"action": "db_reconnected"})
                self.outage_started = None
            return self._conn

    async def call(
        self,
        function: Callable[Concatenate[AsyncConnection, P], Awaitable[R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run one query wrapper; a lost connection becomes `DatabaseUnavailable`."""
        conn = await self.connection()
        try:
            return await function(conn, *args, **kwargs)
        except errors.DatabaseError as exc:
            if conn.closed or conn.broken:
                if self.outage_started is None:
                    self.outage_started = asyncio.get_running_loop().time()
                    logger.warning(
                        "database unreachable: %s", exc, extra={"action": "db_unreachable"}
                    )
                await self._discard(conn)
                raise DatabaseUnavailable(str(exc)) from exc
            raise

    async def run_together(self, statements: Sequence[Statement]) -> list[list[Row]]:
        """Run bound named queries in one transaction and one round trip (pipeline mode).

        All or nothing: any error rolls every statement back and is raised translated
        (`DatabaseUnavailable` when the connection is lost). Returns each one's rows.
        Nothing else may use this link's connection meanwhile: give it a link of its own.
        """
        conn = await self.connection()
        guarded = [pass_idle_limit.bind(PASS_IDLE_LIMIT_MS), *statements]
        try:
            return (await run_together(conn, guarded))[1:]
        except errors.ScitqError as exc:
            if conn.closed or conn.broken:
                await self._discard(conn)
                raise DatabaseUnavailable(str(exc)) from exc
            raise

    async def call_until_done(
        self,
        function: Callable[Concatenate[AsyncConnection, P], Awaitable[R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Like `call`, retrying with back-off (up to 30 s apart) while the database is away."""
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                return await self.call(function, *args, **kwargs)
            except DatabaseUnavailable:
                await asyncio.sleep(backoff.next())

    async def _discard(self, conn: AsyncConnection) -> None:
        async with self._lock:
            if self._conn is conn:
                self._conn = None
        with contextlib.suppress(psycopg.Error):
            await conn.close()

    async def close(self) -> None:
        if self._conn is not None:
            await self._discard(self._conn)
