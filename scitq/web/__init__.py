"""The web dashboard: a Flask app factory (``create_app``), server-rendered pages with
htmx for the live parts, logins with roles, CSRF on every POST.

Serve it with ``scitq web`` (waitress), or any WSGI server::

    waitress-serve --call scitq.web:create_app
    gunicorn --threads 8 'scitq.web:create_app()'

Reads and actions go through the same wrappers of `scitq.db` (one module per entity:
`scitq.db.task`, `scitq.db.batch`, `scitq.db.report`...) as the CLI.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from scitq import errors
from scitq.config import Settings, load_settings
from scitq.web import auth, csrf, db, formatting, secret, sessions
from scitq.web.htmx import is_htmx
from scitq.web.views import batches, cloud, overview, tasks, workers


def create_app(settings: Settings | None = None, **config: Any) -> Flask:
    """Build the dashboard.

    Args:
        settings: scitq settings (`scitq.config.load_settings` by default): the database
            and the ``web`` part.
        **config: Flask configuration overrides (tests pass ``TESTING=True``).
    """
    settings = settings if settings is not None else load_settings()
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=secret.secret_key(settings.web),
        # the cookie's own expiry; the database ends sessions earlier (idle, ended)
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.web.session_max_hours),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="scitq_session",
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    app.config.update(config)
    app.jinja_env.autoescape = True  # also for templates not named .html
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    if settings.web.trusted_proxies:
        hops = settings.web.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    db.init_app(app, settings)
    sessions.init_app(app, settings.web)
    csrf.init_app(app)
    auth.init_app(app, settings.web)
    formatting.init_app(app)
    for blueprint in (
        auth.blueprint,
        overview.blueprint,
        batches.blueprint,
        tasks.blueprint,
        workers.blueprint,
        cloud.blueprint,
    ):
        app.register_blueprint(blueprint)
    # browsers ask for /favicon.ico whatever the page links: the static file, public too
    app.add_url_rule("/favicon.ico", endpoint="static", defaults={"filename": "favicon.svg"})
    app.after_request(_security_headers)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(errors.ScitqError, _scitq_error)
    return app


#: Sent with every answer: no framing (clickjacking), no MIME sniffing, scripts from
#: this site only (htmx; no inline script anywhere), inline styles allowed (the widths
#: of progress bars, htmx's indicator style).
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        # pages show what only a logged-in user may see (and the login form a CSRF
        # token): no browser or proxy cache keeps them, Back after logout shows nothing
        response.headers["Cache-Control"] = "no-store"
    return response


#: HTTP status of each kind of scitq error met while serving a page.
ERROR_STATUS: dict[type[errors.ScitqError], int] = {
    errors.NotFound: 404,
    errors.InvalidArgument: 400,
    errors.InvalidTransition: 409,
    errors.PermissionDenied: 403,
    errors.DatabaseError: 503,
}


def _error_page(status: int, title: str, message: str) -> tuple[str, int]:
    template = "_error.html" if is_htmx() else "error.html"
    return render_template(template, status=status, title=title, message=message), status


def _http_error(error: HTTPException) -> tuple[str, int]:
    return _error_page(error.code or 500, error.name, error.description or error.name)


def _scitq_error(error: errors.ScitqError) -> tuple[str, int]:
    status = next((code for kind, code in ERROR_STATUS.items() if isinstance(error, kind)), 500)
    return _error_page(status, type(error).__name__, str(error))
