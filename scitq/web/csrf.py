"""CSRF protection: a random token in the session, required on every POST.

Pages put it in ``<body hx-headers>`` (htmx sends it as ``X-CSRF-Token``) and in a
hidden ``csrf_token`` field of plain forms. A POST without the session's token is
refused with 400 before any view runs. The session cookie is SameSite=Lax as well.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, request, session

SESSION_KEY = "csrf"
HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
#: Methods that change nothing (the others need the token).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token() -> str:
    """This session's token, created on first use."""
    value = session.get(SESSION_KEY)
    if not isinstance(value, str):
        value = secrets.token_urlsafe(32)
        session[SESSION_KEY] = value
    return value


def renew() -> None:
    """A new token (at login: a token seen before logging in is worth nothing after)."""
    session[SESSION_KEY] = secrets.token_urlsafe(32)


def _check() -> None:
    if request.method in SAFE_METHODS:
        return
    expected = session.get(SESSION_KEY)
    given = request.headers.get(HEADER) or request.form.get(FIELD) or ""
    if not isinstance(expected, str) or not hmac.compare_digest(expected, given):
        abort(400, description="CSRF token missing or invalid: reload the page and try again")


def init_app(app: Flask) -> None:
    app.before_request(_check)
    app.jinja_env.globals["csrf_token"] = token
