"""Logins: users of table ``scitq.web_user`` with werkzeug scrypt password hashes, and
the roles admin (may act) and viewer (may only look).

Every request but the login page and static files needs a user: the one of the
session (`scitq.web.sessions`, kept in the database and ended by logout, a new password
or role, deleting the user, or an admin), or, in trusted-header mode, the one a reverse
proxy names in a request header. The user's row is read on each request, so a deleted
user or a changed role takes effect at once. Viewers get 403 on every POST but logout.

Password logins are throttled per user name and per client address
(``scitq.web_login_attempt_v1``): a few free failures, then a growing back-off, then a
lock-out window; each attempt is recorded before its password is checked.
"""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response as BaseResponse

from scitq.config import WebSettings
from scitq.db.web_session import web_login_attempt
from scitq.db.web_user import web_user_get
from scitq.web import sessions
from scitq.web.db import get_conn
from scitq.web.htmx import is_htmx

logger = logging.getLogger(__name__)
blueprint = Blueprint("auth", __name__)

ROLES = ("admin", "viewer")
#: Endpoints reachable without a user.
PUBLIC_ENDPOINTS = frozenset({"auth.login", "static"})
#: POSTs a viewer may send.
VIEWER_POSTS = frozenset({"auth.logout"})
#: Compared against when the user does not exist, so that a wrong name takes as long
#: as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password", method="scrypt")
TRUSTED_HEADER_KEY = "scitq.trusted_header"


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` (werkzeug's format)."""
    return generate_password_hash(password, method="scrypt")


def init_app(app: Flask, settings: WebSettings) -> None:
    app.extensions[TRUSTED_HEADER_KEY] = settings.trusted_header
    app.before_request(_load_user)


def _trusted_header() -> str | None:
    header: str | None = current_app.extensions.get(TRUSTED_HEADER_KEY)
    return header


def _load_user() -> BaseResponse | None:
    g.user = None
    if request.endpoint == "static":
        return None
    header = _trusted_header()
    if header is not None:
        name = request.headers.get(header)
        g.user = web_user_get(get_conn(), name) if name else None
    else:
        g.user = sessions.user()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if g.user is None:
        if header is not None:
            abort(403, description=f"no dashboard user named by the {header} header")
        return _to_login()
    is_viewer = g.user["role"] != "admin"
    if request.method == "POST" and is_viewer and request.endpoint not in VIEWER_POSTS:
        abort(403, description="viewers may look but not act: ask an admin")
    return None


def _to_login() -> BaseResponse:
    target = url_for("auth.login", next=request.full_path if request.method == "GET" else None)
    if is_htmx():
        # htmx would swap the login page into a fragment: make the browser go there
        response = Response("login required", status=401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


def _safe_next(value: str | None) -> str:
    """A local path to go to after login (never another site, never a header break)."""
    # a backslash is a slash to browsers ("/\\evil.example"); CR/LF would break the header
    unsafe = value is None or any(char < " " or char in "\\\x7f" for char in value)
    if value and not unsafe and value.startswith("/") and not value.startswith("//"):
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc:
            return value
    return url_for("overview.index")


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if _trusted_header() is not None:
        if g.user is None:
            abort(403, description="the reverse proxy did not name a known dashboard user")
        return redirect(_safe_next(request.args.get("next")))
    error, status, retry_after = None, 200, 0
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        address = request.remote_addr or ""
        settings: WebSettings = current_app.extensions[sessions.SETTINGS_KEY]
        attempt = web_login_attempt(
            get_conn(),
            name,
            address,
            settings.login_free_attempts,
            settings.login_lockout_attempts,
            settings.login_lockout_minutes * 60,
        )
        where = {"user": name, "address": address, "user_failures": attempt["user_failures"],
                 "address_failures": attempt["address_failures"]}  # fmt: skip
        if not attempt["allowed"]:
            retry_after = max(1, math.ceil(attempt["retry_after"]))
            logger.warning(
                "login of %r from %s refused (%s): %d failures for the user, %d from the "
                "address; retry in %d s",
                name, address, attempt["reason"], attempt["user_failures"],
                attempt["address_failures"], retry_after,
                extra={"action": "login_throttled", "reason": attempt["reason"], **where},
            )  # fmt: skip
            error = f"Too many failed logins: try again in {retry_after} seconds."
            status = 429
        else:
            user = web_user_get(get_conn(), name) if name else None
            good = check_password_hash(user["password_hash"] if user else _DUMMY_HASH,
                                       request.form.get("password", ""))  # fmt: skip
            if user is not None and good:
                sessions.start(user["name"], attempt["attempt_id"], address)
                logger.info("login of %r from %s", name, address,
                            extra={"action": "login", **where})  # fmt: skip
                return redirect(_safe_next(request.form.get("next")))
            logger.info("failed login of %r from %s", name, address,
                        extra={"action": "login_failed", **where})  # fmt: skip
            error, status = "Unknown user or wrong password.", 401
    next_page = request.values.get("next", "")
    body = render_template("auth/login.html", error=error, next_page=next_page)
    response = Response(body, status=status)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


@blueprint.route("/logout", methods=["POST"])
def logout() -> Any:
    sessions.end("logout")
    return redirect(url_for("auth.login"))
