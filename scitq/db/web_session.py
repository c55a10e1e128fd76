"""Wrappers of the named queries about the web dashboard's sessions and login attempts
(``queries/web_session.sql``). Tokens are passed as their SHA-256 (`token_hash`)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from scitq.db.query import Params, named_query, one_row, optional_row, rows, scalar


def token_hash(token: str) -> bytes:
    """What the database keeps of a session token: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


@named_query(one_row, prepare=False)
def web_session_start(
    token: str, name: str, attempt_id: int | None, address: str | None, now: datetime | None = None
) -> Params:
    """Open a session for ``name`` (whose password was checked); returns name and role."""
    return {"token_hash": token_hash(token), "name": name, "attempt_id": attempt_id,
            "address": address, "now": now}  # fmt: skip


@named_query(optional_row, prepare=False)
def web_session_touch(
    token: str, idle_seconds: int, max_seconds: int, now: datetime | None = None
) -> Params:
    """The user (name, role) of a live session, or None (unknown, ended, idle, too old)."""
    return {"token_hash": token_hash(token), "idle_seconds": idle_seconds,
            "max_seconds": max_seconds, "now": now}  # fmt: skip


@named_query(scalar("ended", bool), prepare=False)
def web_session_end(token: str, reason: str = "logout", now: datetime | None = None) -> Params:
    """End one session; False if it was not live."""
    return {"token_hash": token_hash(token), "reason": reason, "now": now}


@named_query(scalar("ended", int), prepare=False)
def web_session_end_user(name: str, reason: str = "admin", now: datetime | None = None) -> Params:
    """End every live session of a user; how many were ended."""
    return {"name": name, "reason": reason, "now": now}


@named_query(rows, prepare=False)
def web_session_list(name: str | None = None) -> Params:
    """Live sessions (of one user, or all), newest first; never their tokens."""
    return {"name": name}


@named_query(one_row, prepare=False)
def web_login_attempt(
    name: str,
    address: str,
    free: int,
    lockout: int,
    window_seconds: int,
    now: datetime | None = None,
) -> Params:
    """Record a login attempt before checking its password; ``allowed`` says whether to
    check it, else ``retry_after`` (seconds) and ``reason`` (backoff, lockout)."""
    return {"name": name, "address": address, "free": free, "lockout": lockout,
            "window_seconds": window_seconds, "now": now}  # fmt: skip
