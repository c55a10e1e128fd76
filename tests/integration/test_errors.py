"""Errors raised by PostgreSQL itself, translated by scitq.db.connection."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from scitq import errors
from scitq.db.connection import connect, translate_error
from scitq.db.report import schema_counts
from scitq.db.worker import worker_heartbeat

pytestmark = pytest.mark.sql


def _raise(conn: psycopg.Connection[Any], code: str, detail: str = "", hint: str = "") -> Any:
    """Raise ``x`` with SQLSTATE ``code`` from PL/pgSQL; return the translated error."""
    with pytest.raises(psycopg.Error) as info:
        conn.execute(
            "SELECT set_config('scitq.code', %s, false), set_config('scitq.detail', %s, false),"
            " set_config('scitq.hint', %s, false)",
            (code, detail, hint),
        )
        conn.execute(
            """
            DO $$ BEGIN
                RAISE EXCEPTION 'x' USING ERRCODE = current_setting('scitq.code'),
                    DETAIL = current_setting('scitq.detail'), HINT = current_setting('scitq.hint');
            END $$
            """
        )
    return translate_error(info.value)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("SQ001", errors.ExecutionNotLive),
        ("SQ002", errors.WorkerNotOwned),
        ("SQ003", errors.NotFound),
        ("SQ004", errors.InvalidArgument),
        ("SQ005", errors.DependencyCycle),
        ("SQ006", errors.InvalidTransition),
    ],
)
def test_sqlstates_raised_by_postgresql(
    conn: psycopg.Connection[Any], code: str, expected: type[errors.ScitqError]
) -> None:
    error = _raise(conn, code)
    assert type(error) is expected
    assert str(error) == "x"


def test_execution_not_live_carries_the_execution_ids(conn: psycopg.Connection[Any]) -> None:
    error = _raise(conn, "SQ001", detail="4,5")
    assert isinstance(error, errors.ExecutionNotLive)
    assert error.execution_ids == (4, 5)
    assert error.exit_code == 6


def test_hint_is_part_of_the_message(conn: psycopg.Connection[Any]) -> None:
    error = _raise(conn, "SQ003", hint="register again")
    assert str(error) == "x (register again)"


def test_a_stored_function_error_reaches_python_translated(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(errors.NotFound, match="worker 987654 does not exist"):
        worker_heartbeat(conn, 987654)


def test_missing_privilege_is_permission_denied(db: str, make_role: Any) -> None:
    _role, conninfo = make_role("scitq_reader")
    with connect(conninfo) as reader, pytest.raises(errors.PermissionDenied):
        schema_counts(reader)
