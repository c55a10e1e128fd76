"""What an action (a POST) answers: for htmx, the refreshed fragment and a message swapped
out of band into ``#flash``; for a plain form, a message and a redirect (303)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Response, flash, g, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from scitq.errors import ScitqError
from scitq.web.htmx import is_htmx

logger = logging.getLogger("scitq.web.actions")

#: What the message after an action says was done (the past participle of its verb).
DONE = {"pause": "paused", "resume": "resumed", "retry": "retried", "cancel": "canceled",
        "delete": "deleted", "rerun": "runs again"}  # fmt: skip


def audit(action: str, target: str) -> None:
    """Log who did what (an action that changed something)."""
    user = g.user["name"] if g.get("user") else None
    logger.info(
        "%s %s by %s",
        action,
        target,
        user,
        extra={"user": user, "action": action, "target": target},
    )


def local_referrer(default: str) -> str:
    """The page the action came from, as a path of this site, else ``default``: a
    ``Referer`` naming another site (or scheme, or port) is never redirected to."""
    referrer = request.referrer
    if not referrer or any(char < " " or char in "\\\x7f" for char in referrer):
        return default
    parts = urlsplit(referrer)
    if (parts.scheme, parts.netloc) != (request.scheme, request.host) or not parts.path:
        return default
    path = "/" + parts.path.lstrip("/")  # never "//host": a scheme-relative URL
    return f"{path}?{parts.query}" if parts.query else path


def _flash_fragment(message: str, category: str) -> str:
    return render_template("_flash.html", message=message, category=category)


def acted(message: str, back: str, fragment: Callable[[], str] | None = None) -> BaseResponse:
    """Success: ``fragment()`` (if any) replaces the target; ``message`` is shown."""
    if not is_htmx():
        flash(message, "ok")
        return redirect(back, code=303)
    body = (fragment() if fragment is not None else "") + _flash_fragment(message, "ok")
    return Response(body)


def refused(error: ScitqError, back: str) -> BaseResponse:
    """The action was refused (unknown object, invalid transition...): say why, change
    nothing on the page."""
    if not is_htmx():
        flash(str(error), "error")
        return redirect(back, code=303)
    response = Response(_flash_fragment(str(error), "error"))
    response.headers["HX-Reswap"] = "none"  # only the out-of-band message is swapped
    return response


def go_to(url: str, message: str) -> BaseResponse:
    """Success that leaves the page (a deleted object): the browser goes to ``url``."""
    flash(message, "ok")
    if is_htmx():
        response = Response("")
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)
