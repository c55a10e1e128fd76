"""The schema revision, read without Alembic.

Every command that uses the embedded database checks that its schema is current; Alembic
and SQLAlchemy cost about 0.3 s to import, so they load only when a migration must run
(`scitq.db.migrate`). The head is read from the version files of a linear history; any
other shape returns None and leaves the decision to Alembic.
"""

from __future__ import annotations

import re
from pathlib import Path

from scitq.db.connection import connect
from scitq.db.query import Params, named_query, optional_row, scalar

_REVISION = re.compile(r"""^revision(?:\s*:[^=]*)?=\s*["']([^"']+)["']""", re.M)
_DOWN = re.compile(r"""^down_revision(?:\s*:[^=]*)?=\s*(?:["']([^"']+)["']|None)\s*$""", re.M)


def migrations_dir() -> Path:
    """The Alembic script directory: packaged in a wheel, or at the source tree's root."""
    packaged = Path(__file__).resolve().parent.parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "migrations"


def quick_head_revision() -> str | None:
    """The head revision of a linear history of version files; None if it is not one."""
    revisions: dict[str, str | None] = {}
    for path in sorted((migrations_dir() / "versions").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(text), _DOWN.search(text)
        if revision is None or down is None:
            return None
        revisions[revision[1]] = down[1]
    parents = [down for down in revisions.values() if down is not None]
    heads = [revision for revision in revisions if revision not in parents]
    roots = [revision for revision, down in revisions.items() if down is None]
    if len(heads) != 1 or len(roots) != 1 or len(set(parents)) != len(parents):
        return None  # branches or merges: Alembic knows
    return heads[0]


@named_query(scalar("found", bool), prepare=False)
def revision_table_exists() -> Params:
    """Whether the database has the Alembic version table."""
    return {}


@named_query(optional_row, prepare=False)
def revision_recorded() -> Params:
    """The row of the version table (``version_num``), None when it is empty."""
    return {}


def database_revision(conninfo: str) -> str | None:
    """The revision recorded in the database (None: no schema yet)."""
    with connect(conninfo) as conn:
        row = revision_recorded(conn) if revision_table_exists(conn) else None
    return None if row is None else str(row["version_num"])


def is_current(conninfo: str) -> bool:
    """Whether the database is surely at the head revision (False: ask Alembic)."""
    head = quick_head_revision()
    return head is not None and database_revision(conninfo) == head
