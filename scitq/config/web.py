"""``[web]``: how the web dashboard serves (``SCITQ_WEB_*``; docs/web.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scitq.config.paths import default_data_dir
from scitq.config.source import ConfigSource, key


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    """How the web dashboard serves: the ``[web]`` table and ``SCITQ_WEB_*`` variables.

    Attributes:
        host: the address to listen on (loopback by default: put a reverse proxy with
            TLS in front to serve other machines).
        port: the TCP port.
        secret_key: the key that signs session cookies; None reads (or creates, mode
            0600) ``secret_key_file``.
        secret_key_file: where the generated key is kept.
        trusted_header: a request header naming the logged-in user, set by a reverse
            proxy that authenticated them (e.g. ``X-Remote-User``); None disables it.
            Only enable it when nothing but the proxy can reach the dashboard.
        threads: requests served at once (and database connections held at most).
    """

    host: str = "127.0.0.1"
    port: int = field(default=5000, metadata=key(maximum=65535))
    secret_key: str | None = field(default=None, repr=False)
    secret_key_file: Path = field(default_factory=lambda: default_data_dir() / "web-secret-key")
    trusted_header: str | None = None
    threads: int = field(default=8, metadata=key(minimum=1, maximum=256))


def web_settings(source: ConfigSource, data_dir: Path) -> WebSettings:
    """``[web]``, each key overridden by ``SCITQ_WEB_<KEY>``; the key file defaults to
    ``<data_dir>/web-secret-key``."""
    values = source.read(WebSettings, "web", env_prefix="SCITQ_WEB_")
    values.setdefault("secret_key_file", data_dir / "web-secret-key")
    return WebSettings(**values)
