"""Logins: users of table ``scitq.web_user`` with werkzeug scrypt password hashes, and
the roles admin (may act) and viewer (may only look).

Every request but the login page and static files needs a user: the session's (set at
login), or, in trusted-header mode, the one a reverse proxy names in a request header.
The user's row is read again on each request, so a deleted user or a changed role
takes effect at once. Viewers get 403 on every POST but logout.
"""

from __future__ import annotations

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
    session,
    url_for,
)
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response as BaseResponse

from scitq.config import WebSettings
from scitq.db.web_user import web_user_get, web_user_record_login
from scitq.web import csrf
from scitq.web.db import get_conn
from scitq.web.htmx import is_htmx

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
    name = request.headers.get(header) if header is not None else session.get("user")
    if isinstance(name, str) and name:
        g.user = web_user_get(get_conn(), name)
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if g.user is None:
        if header is not None:
            abort(403, description=f"no dashboard user named by the {header} header")
        session.pop("user", None)
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
    """A local path to go to after login (never another site)."""
    if value and value.startswith("/") and not value.startswith("//"):
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
    error = None
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        password = request.form.get("password", "")
        user = web_user_get(get_conn(), name) if name else None
        good = check_password_hash(user["password_hash"] if user else _DUMMY_HASH, password)
        if user is not None and good:
            session.clear()
            session["user"] = user["name"]
            session.permanent = True
            csrf.renew()
            web_user_record_login(get_conn(), user["name"])
            return redirect(_safe_next(request.form.get("next")))
        error = "Unknown user or wrong password."
    status = 401 if error else 200
    next_page = request.values.get("next", "")
    return render_template("auth/login.html", error=error, next_page=next_page), status


@blueprint.route("/logout", methods=["POST"])
def logout() -> Any:
    session.clear()
    return redirect(url_for("auth.login"))
