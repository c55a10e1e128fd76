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
        session_idle_minutes: a login ends after this long without a request.
        session_max_hours: a login ends this long after it began, used or not.
        login_free_attempts: failed logins (per user name, and per client address) in
            the lock-out window before each further attempt must wait, twice longer
            each time (1 s, 2 s, 4 s...).
        login_lockout_attempts: failed or refused logins in the window from which every
            attempt is refused until the window has passed since the last one.
        login_lockout_minutes: the window over which attempts are counted.
        trusted_proxies: how many reverse proxies in front of the dashboard set
            ``X-Forwarded-For`` and ``X-Forwarded-Proto`` (believed for that many hops:
            the client address throttled, HTTPS for the cookie's ``Secure``); 0 believes
            no such header.
    """

    host: str = "127.0.0.1"
    port: int = field(default=5000, metadata=key(maximum=65535))
    secret_key: str | None = field(default=None, repr=False)
    secret_key_file: Path = field(default_factory=lambda: default_data_dir() / "web-secret-key")
    trusted_header: str | None = None
    threads: int = field(default=8, metadata=key(minimum=1, maximum=256))
    session_idle_minutes: int = field(default=720, metadata=key(minimum=1))
    session_max_hours: int = field(default=24, metadata=key(minimum=1, maximum=24 * 366))
    login_free_attempts: int = field(default=5, metadata=key(minimum=1, maximum=1000))
    login_lockout_attempts: int = field(default=20, metadata=key(minimum=2, maximum=10000))
    login_lockout_minutes: int = field(default=15, metadata=key(minimum=1, maximum=24 * 60 * 7))
    trusted_proxies: int = field(default=0, metadata=key(maximum=10))


def web_settings(source: ConfigSource, data_dir: Path) -> WebSettings:
    """``[web]``, each key overridden by ``SCITQ_WEB_<KEY>``; the key file defaults to
    ``<data_dir>/web-secret-key``."""
    values = source.read(WebSettings, "web", env_prefix="SCITQ_WEB_")
    values.setdefault("secret_key_file", data_dir / "web-secret-key")
    return WebSettings(**values)
