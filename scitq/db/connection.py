"""Connections to PostgreSQL and the one place where database errors are translated.

A leaf: it opens connections from a libpq string and translates errors, and starts
nothing (the embedded server is `scitq.embedded`'s). psycopg exceptions never escape the
`scitq.db` package.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

import psycopg
from psycopg import errors as pg_errors

from scitq import errors

logger = logging.getLogger(__name__)

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
