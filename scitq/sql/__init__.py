"""SQL sources: stored functions, views and roles, and the named queries.

``functions/*.sql`` hold the current definitions, applied in file-name order (migrations
run frozen copies of them). ``queries/*.sql`` hold the named queries that Python runs::

    -- name: task_claim
    -- Claim up to %(limit)s tasks for a worker.
    SELECT * FROM scitq.task_claim_v1(%(worker_id)s, %(limit)s);

Query names are unique across files; parameters are psycopg named placeholders.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString, cast

_NAME = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def function_sources() -> list[tuple[str, str]]:
    """The function, view and role definitions as ``(file name, text)`` in apply order."""
    folder = resources.files(__package__) / "functions"
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [(entry.name, entry.read_text(encoding="utf-8")) for entry in files]


def parse_queries(text: str, source: str = "<string>") -> dict[str, LiteralString]:
    """Split a named-query file into ``{name: sql}``."""
    parts = _NAME.split(text)
    queries: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = "\n".join(
            line for line in body.strip().splitlines() if not line.lstrip().startswith("--")
        ).strip()
        if not sql:
            raise ValueError(f"query {name} in {source} is empty")
        # The files are part of the package, never user input: a literal for type checkers.
        queries[name] = cast(LiteralString, sql)  # type: ignore[redundant-cast]
    return queries


@cache
def queries() -> dict[str, LiteralString]:
    """Every named query of ``queries/*.sql``."""
    found: dict[str, LiteralString] = {}
    folder = resources.files(__package__) / "queries"
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, sql in parse_queries(entry.read_text(encoding="utf-8"), entry.name).items():
            if name in found:
                raise ValueError(f"query {name} is defined twice (in {entry.name})")
            found[name] = sql
    return found
