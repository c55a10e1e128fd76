"""CSRF protection: a token required on every POST, derived from the session's token
(an HMAC under the app's secret key), so that the cookie carries nothing else and a new
login (a new session token) means a new CSRF token.

Pages put it in ``<body hx-headers>`` (htmx sends it as ``X-CSRF-Token``) and in a
hidden ``csrf_token`` field of plain forms. A POST without the session's token is
refused with 400 before any view runs. The session cookie is SameSite=Lax as well.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, abort, current_app, request, session

from scitq.web import sessions

HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
#: Methods that change nothing (the others need the token).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _derive(session_token: str) -> str:
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def token() -> str:
    """This session's token (the session's own token is created on first use)."""
    return _derive(sessions.token())


def _check() -> None:
    if request.method in SAFE_METHODS:
        return
    session_token = session.get(sessions.TOKEN_KEY)
    given = request.headers.get(HEADER) or request.form.get(FIELD) or ""
    if (
        not isinstance(session_token, str)
        or not session_token
        or not hmac.compare_digest(_derive(session_token), given)
    ):
        abort(400, description="CSRF token missing or invalid: reload the page and try again")


def init_app(app: Flask) -> None:
    app.before_request(_check)
    app.jinja_env.globals["csrf_token"] = token
