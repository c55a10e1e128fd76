"""The exception hierarchy and the translation of psycopg errors (without a server)."""

from __future__ import annotations

import re

import psycopg
import pytest
from psycopg import errors as pg_errors

from scitq import errors, sql
from scitq.db.connection import SQLSTATE_ERRORS, connect, translate_error, translated


def _error_with_sqlstate(code: str, message: str) -> psycopg.Error:
    raised: type[psycopg.Error] = type(f"Raised{code}", (psycopg.Error,), {"sqlstate": code})
    return raised(message)


def test_every_documented_sqlstate_is_translated() -> None:
    common = dict(sql.function_sources())["00_common.sql"]
    documented = set(re.findall(r"^--\s+(SQ\d{3})\s", common, flags=re.MULTILINE))
    assert documented  # the list is where the module docstrings say it is
    assert documented == set(SQLSTATE_ERRORS)


@pytest.mark.parametrize(
    ("code", "expected", "exit_code"),
    [
        ("SQ001", errors.ExecutionNotLive, 6),
        ("SQ002", errors.WorkerNotOwned, 7),
        ("SQ003", errors.NotFound, 4),
        ("SQ004", errors.InvalidArgument, 2),
        ("SQ005", errors.DependencyCycle, 2),
        ("SQ006", errors.InvalidTransition, 5),
    ],
)
def test_sq_sqlstates_map_to_their_exception(
    code: str, expected: type[errors.ScitqError], exit_code: int
) -> None:
    error = translate_error(_error_with_sqlstate(code, "what went wrong"))
    assert type(error) is expected
    assert str(error) == "what went wrong"
    assert error.exit_code == exit_code


def test_dependency_cycle_is_an_invalid_argument() -> None:
    assert issubclass(errors.DependencyCycle, errors.InvalidArgument)


def test_execution_not_live_without_detail_has_no_ids() -> None:
    error = translate_error(_error_with_sqlstate("SQ001", "gone"))
    assert isinstance(error, errors.ExecutionNotLive)
    assert error.execution_ids == ()


@pytest.mark.parametrize(
    ("exc", "expected", "fragment"),
    [
        (pg_errors.InsufficientPrivilege("no"), errors.PermissionDenied, "permission denied: no"),
        (pg_errors.UniqueViolation("dup"), errors.InvalidArgument, "invalid value: dup"),
        (pg_errors.NumericValueOutOfRange("big"), errors.InvalidArgument, "invalid value: big"),
        (psycopg.OperationalError("refused"), errors.DatabaseError, "cannot reach the database"),
        # transaction rollbacks are OperationalErrors to psycopg, yet the server answered
        (
            pg_errors.DeadlockDetected("deadlock detected"),
            errors.DatabaseError,
            "the database rolled the transaction back (deadlock detected): nothing of it was",
        ),
        (
            pg_errors.SerializationFailure("could not serialize"),
            errors.DatabaseError,
            "rolled the transaction back (could not serialize)",
        ),
        (pg_errors.UndefinedTable("no table"), errors.DatabaseError, "database error 42P01"),
    ],
)
def test_postgresql_errors_map_by_class(
    exc: psycopg.Error, expected: type[errors.ScitqError], fragment: str
) -> None:
    error = translate_error(exc)
    assert type(error) is expected
    assert fragment in str(error)


def test_translated_chains_the_original() -> None:
    original = pg_errors.InsufficientPrivilege("no")
    with pytest.raises(errors.PermissionDenied) as info, translated():
        raise original
    assert info.value.__cause__ is original


def test_unreachable_server_is_a_database_error_with_exit_code_3() -> None:
    with pytest.raises(errors.DatabaseError, match="cannot reach the database") as info:
        connect("postgresql://scitq@127.0.0.1:1/scitq?connect_timeout=5")
    assert info.value.exit_code == 3


def test_default_message_is_the_docstring() -> None:
    assert str(errors.NotFound()) == "The requested object does not exist."
    assert str(errors.NotFound("task 3 does not exist")) == "task 3 does not exist"


def test_exit_codes_distinguish_kinds_of_error() -> None:
    assert errors.ScitqError.exit_code == 1
    assert errors.ConfigError.exit_code == errors.InvalidArgument.exit_code == 2
    assert errors.DatabaseError.exit_code == errors.EmbeddedServerError.exit_code == 3
    assert errors.NotFound.exit_code == 4
    assert errors.PermissionDenied.exit_code == errors.WorkerNotOwned.exit_code == 7
    assert all(
        issubclass(cls, errors.ScitqError)
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, Exception)
    )
