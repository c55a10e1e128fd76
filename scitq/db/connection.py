"""Connections to PostgreSQL and the one place where database errors are translated.

A leaf: it opens connections from a libpq string and translates errors, and starts
nothing (the embedded server is `scitq.embedded`'s). psycopg exceptions never escape the
`scitq.db` package.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from scitq import errors

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: A connection as `connect` and `Reopening` give them.
Connection = psycopg.Connection[Any]

#: SQLSTATEs raised by scitq's functions (documented in scitq/sql/functions/00_common.sql).
SQLSTATE_ERRORS: dict[str, type[errors.ScitqError]] = {
    "SQ001": errors.ExecutionNotLive,
    "SQ002": errors.WorkerNotOwned,
    "SQ003": errors.NotFound,
    "SQ004": errors.InvalidArgument,
    "SQ005": errors.DependencyCycle,
    "SQ006": errors.InvalidTransition,
}


def connect(
    conninfo: str, *, autocommit: bool = True, application_name: str = "scitq"
) -> psycopg.Connection[tuple[object, ...]]:
    """Open a connection; each statement is its own transaction unless autocommit is off.

    ``conninfo`` is a libpq string: for the configured database, from
    `scitq.embedded.conninfo_for` (which starts the embedded server when none is set).
    """
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, application_name=application_name)
    except psycopg.Error as exc:
        raise translate_error(exc) from exc


def translate_error(exc: psycopg.Error) -> errors.ScitqError:
    """The scitq exception for a psycopg error, with a message that says what is wrong."""
    sqlstate = exc.sqlstate or ""
    diag = exc.diag
    message = diag.message_primary or str(exc).strip() or type(exc).__name__
    if diag.message_hint:
        message = f"{message} ({diag.message_hint})"
    if sqlstate:
        # one line: a value the server quotes may hold a newline or a control character
        # (client-side errors keep their lines: the CLI shows them with --verbose)
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    known = SQLSTATE_ERRORS.get(sqlstate)
    if known is errors.ExecutionNotLive:
        detail = diag.message_detail or ""
        ids = tuple(int(part) for part in detail.split(",") if part.strip().isdigit())
        return errors.ExecutionNotLive(message, execution_ids=ids)
    if known is not None:
        return known(message)
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return errors.PermissionDenied(f"permission denied: {message}")
    if sqlstate.startswith("22") or sqlstate.startswith("23") or isinstance(exc, psycopg.DataError):
        # data exceptions and integrity violations: the input was wrong
        return errors.InvalidArgument(f"invalid value: {message}")
    if sqlstate.startswith("40"):  # a deadlock or a serialization failure: nothing was kept
        return errors.DatabaseError(
            f"the database rolled the transaction back ({message}): nothing of it was "
            "stored; try again"
        )
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return errors.DatabaseError(f"cannot reach the database: {message}")
    return errors.DatabaseError(f"database error {sqlstate}: {message}".strip())


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Translate psycopg errors (also when SQLAlchemy wraps them) into scitq errors."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate_error(exc) from exc
    except Exception as exc:
        # only code that imported SQLAlchemy (Alembic) can raise its errors: importing it
        # here would cost every command 0.15 s
        alchemy = sys.modules.get("sqlalchemy.exc")
        if alchemy is None or not isinstance(exc, alchemy.DBAPIError):
            raise
        if isinstance(exc.orig, psycopg.Error):
            raise translate_error(exc.orig) from exc
        raise errors.DatabaseError(f"database error: {exc}") from exc


class Reopening:
    """One connection, reopened at its first use after it broke (a restart, a failover).

    Given several conninfos, it uses the first that answers: a read replica, then the
    primary (`scitq.embedded.read_conninfos`); a fallback is logged once per process.
    With a multi-host conninfo (``host=a,b target_session_attrs=read-write``) libpq itself
    finds the server that accepts writes, at each (re)connection.
    """

    _fell_back: set[str] = set()  # the conninfos already said to be unreachable

    def __init__(
        self,
        conninfos: Sequence[str],
        application_name: str = "scitq",
        configure: Callable[[Connection], None] | None = None,
    ) -> None:
        if not conninfos:
            raise errors.InvalidArgument("no database to connect to")
        self._conninfos = list(conninfos)
        self._application_name = application_name
        #: applied to each new connection (`scitq.db.pooler.fit_for_pooler`)
        self._configure = configure
        self._conn: Connection | None = None
        #: How long the last successful call of `outlasting` took (its outages excluded).
        self.last_call_seconds = 0.0

    @property
    def lost(self) -> bool:
        """Whether the connection broke (it is reopened at the next `get`)."""
        return self._conn is None or self._conn.broken

    def get(self) -> Connection:
        """The open connection; a new one if it broke (`DatabaseError` if none answers)."""
        if self._conn is not None and not self._conn.broken:
            return self._conn
        *preferred, last = self._conninfos
        for conninfo in preferred:
            try:
                return self._open(conninfo)
            except errors.DatabaseError as exc:
                if conninfo not in Reopening._fell_back:
                    Reopening._fell_back.add(conninfo)
                    logger.warning(
                        "the read replica is unreachable, reading from the primary: %s",
                        " ".join(str(exc).split()), extra={"action": "replica_fallback"},
                    )  # fmt: skip
        return self._open(last)

    def _open(self, conninfo: str) -> Connection:
        conn = connect(conninfo, application_name=self._application_name)
        if self._configure is not None:
            try:
                self._configure(conn)
            except BaseException:
                conn.close()
                raise
        self._conn = conn
        return conn

    def outlasting(self, call: Callable[[], T], give_up_at: float | None = None) -> T:
        """``call()``, called again while the database is away (until ``give_up_at``, a
        `time.monotonic` time): for the waits and follows that outlast a failover."""
        pause = 0.25
        while True:
            started = time.monotonic()
            try:
                result = call()
                self.last_call_seconds = time.monotonic() - started
                return result
            except errors.DatabaseError:
                now = time.monotonic()
                if not self.lost or (give_up_at is not None and now + pause > give_up_at):
                    raise
                logger.info("database unreachable: retrying", extra={"action": "db_retry"})
                time.sleep(pause)
                pause = min(5.0, pause * 2)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
