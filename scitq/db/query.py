"""The one executor of named queries, for synchronous and asynchronous connections.

A wrapper is written once, as a function that turns its Python arguments into the
query's parameters, decorated with how the rows come back::

    @named_query(one_row)
    def worker_heartbeat(worker_id: int, execution_ids: Iterable[int] = ()) -> Params:
        return {"worker_id": worker_id, "execution_ids": list(execution_ids), "now": None}

    worker_heartbeat(conn, 7, [1, 2])                  # psycopg.Connection
    await worker_heartbeat.run_async(aconn, 7, [1, 2]) # psycopg.AsyncConnection
    worker_heartbeat.bind(7, [1, 2])                   # a Statement, for run_together

The function's name is the query's name in ``scitq/sql/queries/*.sql`` (and the stem
of the stored function it calls: ``task_claim`` runs ``scitq.task_claim_v1``). Errors
are translated here (`scitq.db.connection.translated`), arguments are bound, never
interpolated, and this module alone reads `scitq.sql.queries`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, LiteralString, ParamSpec, TypeVar

import psycopg
from psycopg.rows import dict_row

from scitq import errors, sql
from scitq.db.connection import translated
from scitq.db.rows import from_row

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")

Row = dict[str, Any]
Params = dict[str, Any]
Connection = psycopg.Connection[Any]
AsyncConnection = psycopg.AsyncConnection[Any]
#: How the rows of a query become its wrapper's result.
Shape = Callable[[list[Row]], T]
#: A better error for a refused call, from the error and the parameters (or None).
Refine = Callable[[errors.ScitqError, Params], errors.ScitqError | None]


# -- result shapes ------------------------------------------------------------------------


def rows(found: list[Row]) -> list[Row]:
    """Every row, as dicts."""
    return found


def one_row(found: list[Row]) -> Row:
    """The first row (the query always returns one)."""
    return found[0]


def optional_row(found: list[Row]) -> Row | None:
    """The first row, or None when there is none."""
    return found[0] if found else None


def nothing(found: list[Row]) -> None:
    """No result (the call is made for what it changes)."""
    return None


def scalar(column: str, kind: Callable[[Any], R]) -> Shape[R]:
    """One column of the first row, converted by ``kind`` (``int``, ``bool``...)."""

    def shape(found: list[Row]) -> R:
        return kind(found[0][column])

    return shape


def optional_scalar(column: str, kind: Callable[[Any], R]) -> Shape[R | None]:
    """One column of the first row, or None when it is NULL."""

    def shape(found: list[Row]) -> R | None:
        value = found[0][column]
        return None if value is None else kind(value)

    return shape


#: The ``count`` column that functions returning a number of rows are selected as.
count = scalar("count", int)


def rows_of(cls: type[R]) -> Shape[list[R]]:
    """Every row as a result dataclass of `scitq.db.rows`."""

    def shape(found: list[Row]) -> list[R]:
        return [from_row(cls, row) for row in found]

    return shape


def optional_of(cls: type[R]) -> Shape[R | None]:
    """The first row as a result dataclass, or None when there is none."""

    def shape(found: list[Row]) -> R | None:
        return from_row(cls, found[0]) if found else None

    return shape


# -- the executor -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Statement:
    """A named query with its parameters bound, to be run later (`run_together`)."""

    name: str
    sql: LiteralString
    params: Params


class NamedQuery(Generic[P, T]):
    """A named query: its parameters from Python arguments, its result from its rows."""

    def __init__(
        self,
        build: Callable[P, Params],
        shape: Shape[T],
        *,
        prepare: bool | None = None,
        refine: Refine | None = None,
    ) -> None:
        self.name: str = build.__name__
        self._build = build
        self._shape = shape
        self._prepare = prepare
        self._refine = refine
        functools.update_wrapper(self, build)

    @property
    def sql(self) -> LiteralString:
        """The text of the query (`KeyError` if ``queries/*.sql`` has none of its name)."""
        return sql.queries()[self.name]

    def bind(self, *args: P.args, **kwargs: P.kwargs) -> Statement:
        """The statement with these arguments, for `run_together`."""
        return Statement(self.name, self.sql, self._build(*args, **kwargs))

    def __call__(self, conn: Connection, /, *args: P.args, **kwargs: P.kwargs) -> T:
        params = self._build(*args, **kwargs)
        try:
            with translated(), conn.cursor(row_factory=dict_row) as cur:
                cur.execute(self.sql, params, prepare=self._prepare)
                return self._shape(cur.fetchall() if cur.description else [])
        except errors.ScitqError as exc:
            self._refine_error(exc, params)
            raise

    async def run_async(self, conn: AsyncConnection, /, *args: P.args, **kwargs: P.kwargs) -> T:
        """The same call on an asynchronous connection (the agent's)."""
        params = self._build(*args, **kwargs)
        try:
            with translated():
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(self.sql, params, prepare=self._prepare)
                    return self._shape(await cur.fetchall() if cur.description else [])
        except errors.ScitqError as exc:
            self._refine_error(exc, params)
            raise

    def _refine_error(self, exc: errors.ScitqError, params: Params) -> None:
        """Raise the better error of ``refine``, if it has one."""
        better = None if self._refine is None else self._refine(exc, params)
        if better is not None:
            raise better from exc

    def __repr__(self) -> str:
        return f"<named query {self.name}>"


def named_query(
    shape: Shape[T], *, prepare: bool | None = None, refine: Refine | None = None
) -> Callable[[Callable[P, Params]], NamedQuery[P, T]]:
    """Make a parameter-building function the wrapper of the query of the same name.

    Args:
        shape: how rows become the result (`rows`, `one_row`, `count`...).
        prepare: ``False`` for queries with optional filters (``x IS NULL OR ...``),
            which must be planned with the actual values each time; ``None`` leaves it
            to the connection (psycopg prepares a statement run often).
        refine: a better error than the translated one, on the error path only.
    """

    def decorate(build: Callable[P, Params]) -> NamedQuery[P, T]:
        return NamedQuery(build, shape, prepare=prepare, refine=refine)

    return decorate


async def run_together(conn: AsyncConnection, statements: Iterable[Statement]) -> list[list[Row]]:
    """Run statements in one transaction and one round trip (pipeline mode).

    All or nothing: any error rolls every statement back and is raised translated.
    Returns the rows of each statement, in order (dicts; [] for a statement without).
    """
    cursors = []
    with translated():
        async with conn.pipeline(), conn.transaction():
            for statement in statements:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(statement.sql, statement.params)
                cursors.append(cur)
        return [await cur.fetchall() if cur.description else [] for cur in cursors]


def wrappers(namespace: Mapping[str, object]) -> dict[str, NamedQuery[Any, Any]]:
    """The named-query wrappers defined in a module's namespace, by name."""
    return {
        name: value
        for name, value in namespace.items()
        if isinstance(value, NamedQuery) and value.name == name
    }
