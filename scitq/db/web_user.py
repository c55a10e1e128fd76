"""Wrappers of the named queries about the web dashboard's users (``queries/web_user.sql``)."""

from __future__ import annotations

from scitq.db.query import Params, named_query, nothing, one_row, optional_row, rows, scalar


@named_query(optional_row, prepare=False)
def web_user_get(name: str) -> Params:
    """A user with its password hash, or None."""
    return {"name": name}


@named_query(rows, prepare=False)
def web_user_list() -> Params:
    return {}


@named_query(one_row, prepare=False)
def web_user_set(name: str, password_hash: str, role: str) -> Params:
    """Create a user or replace its password and role; ``created`` says which."""
    return {"name": name, "password_hash": password_hash, "role": role}


@named_query(nothing, prepare=False)
def web_user_record_login(name: str) -> Params:
    return {"name": name}


@named_query(scalar("deleted", bool), prepare=False)
def web_user_delete(name: str) -> Params:
    """Delete a user; False if there was none of that name."""
    return {"name": name}
