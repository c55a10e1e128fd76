"""Server-side sessions: the signed session cookie carries one random token and nothing
else (no user name, no role); the database keeps the token's SHA-256 in
``scitq.web_session`` with the user, when it began, when it was last seen and when and
why it ended.

A session is valid while that row is not ended, was used within the idle lifetime and
began within the absolute one (``session_idle_minutes``, ``session_max_hours``). Logging
out, a new password or role, deleting the user and ``scitq web end-sessions`` end it in
the database, so a copy of the cookie is worth nothing from the next request on.

Before login the token is anonymous (no row): it keys the CSRF token of the login
form. Logging in replaces it with a new one, so a token planted or seen before the
login is worth nothing after (session fixation).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from flask import Flask, current_app, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface, SessionMixin

from scitq.config import WebSettings
from scitq.db.query import Row
from scitq.db.web_session import web_session_end, web_session_start, web_session_touch
from scitq.web.db import get_conn

#: The one key of the session cookie.
TOKEN_KEY = "t"
SETTINGS_KEY = "scitq.web_settings"


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, expiring after the absolute lifetime, marked ``Secure`` when
    the request came over HTTPS (itself, or through a trusted proxy that said so in
    ``X-Forwarded-Proto``) or when ``SESSION_COOKIE_SECURE`` is set."""

    def get_expiration_time(self, app: Flask, session: SessionMixin) -> datetime:
        # every cookie lasts the absolute lifetime (no "_permanent" flag in the cookie)
        return datetime.now(UTC) + app.permanent_session_lifetime

    def get_cookie_secure(self, app: Flask) -> bool:
        if app.config["SESSION_COOKIE_SECURE"]:
            return True
        return has_request_context() and request.is_secure


def init_app(app: Flask, settings: WebSettings) -> None:
    app.extensions[SETTINGS_KEY] = settings
    app.session_interface = SessionInterface()


def _settings() -> WebSettings:
    settings: WebSettings = current_app.extensions[SETTINGS_KEY]
    return settings


def token() -> str:
    """This browser's token, created (anonymous) on first use."""
    value = session.get(TOKEN_KEY)
    if not isinstance(value, str) or not value:
        value = secrets.token_urlsafe(32)
        session[TOKEN_KEY] = value
    return value


def user() -> Row | None:
    """The user (name, role) of this request's live session, or None.

    A session past its idle or absolute lifetime is ended by this call."""
    value = session.get(TOKEN_KEY)
    if not isinstance(value, str) or not value:
        return None
    settings = _settings()
    return web_session_touch(
        get_conn(),
        value,
        settings.session_idle_minutes * 60,
        settings.session_max_hours * 3600,
    )


def start(name: str, attempt_id: int | None, address: str) -> Row:
    """Log ``name`` in (their password was checked): a new token, a new session row."""
    session.clear()
    value = secrets.token_urlsafe(32)
    session[TOKEN_KEY] = value
    return web_session_start(get_conn(), value, name, attempt_id, address)


def end(reason: str = "logout") -> None:
    """End this request's session in the database and forget its token."""
    value = session.get(TOKEN_KEY)
    if isinstance(value, str) and value:
        web_session_end(get_conn(), value, reason)
    session.clear()
