"""What an action (a POST) answers: for htmx, the refreshed fragment and a message swapped
out of band into ``#flash``; for a plain form, a message and a redirect (303)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Response, flash, g, redirect, render_template
from werkzeug.wrappers import Response as BaseResponse

from scitq.errors import ScitqError
from scitq.web.htmx import is_htmx

logger = logging.getLogger("scitq.web.actions")

#: What the message after an action says was done (the past participle of its verb).
DONE = {"pause": "paused", "resume": "resumed", "retry": "retried", "cancel": "canceled",
        "delete": "deleted"}  # fmt: skip


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
