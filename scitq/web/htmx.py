"""htmx requests: detected here only. A route renders its full page, or just the partial
(``_name.html``) that the page includes, when htmx asks (contact-app's pattern)."""

from __future__ import annotations

from typing import Any

from flask import render_template, request


def is_htmx() -> bool:
    """Whether htmx sent this request (``HX-Request: true``), not a boosted navigation."""
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-Boosted")


def render(page: str, partial: str, **context: Any) -> str:
    """The partial template for htmx, the full page otherwise (both get ``context``)."""
    return render_template(partial if is_htmx() else page, **context)
