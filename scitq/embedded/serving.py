"""`scitq db serve`: the embedded server reached from other machines over TLS.

The PostgreSQL server listens on the loopback interface only, on a port of its own, with
SCRAM passwords; this process's `TlsProxy` listens where asked and relays. Connections
from other machines must use TLS (the certificate from `scitq.embedded.tls`, or the
user's own); clear text is accepted from the loopback only. While serving,
``<data dir>/serving.json`` says where (host, port, CA), for `scitq db create-role`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil

from scitq.embedded.proxy import TlsProxy
from scitq.embedded.server import DATABASE, SUPERUSER, EmbeddedServer
from scitq.embedded.tls import TlsFiles, ensure_certificates, local_names, server_context
from scitq.errors import EmbeddedServerError, InvalidArgument

_RECORD = "serving.json"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where agents connect: ``host:port`` with TLS verified by ``ca`` (None: by the
    system's authorities)."""

    host: str
    port: int
    ca: Path | None

    def tls_query(self) -> str:
        """The URI query that makes libpq verify the server (``?sslmode=verify-full...``)."""
        root = str(self.ca) if self.ca is not None else "system"
        return f"?sslmode=verify-full&sslrootcert={quote(root, safe='/')}"

    def uri(self, user: str = SUPERUSER, database: str = DATABASE) -> str:
        return f"postgresql://{quote(user, safe='')}@{self.host}:{self.port}/{database}" + (
            self.tls_query()
        )


def _public_host(listen: str) -> str:
    host = listen.split(",")[0].strip()
    if host in ("*", "0.0.0.0", "::"):
        host = socket.getfqdn()
    return f"[{host}]" if ":" in host else host


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def current_endpoint(data_dir: Path) -> Endpoint | None:
    """Where `scitq db serve` serves this data directory now, or None."""
    try:
        record = json.loads((data_dir.expanduser().resolve() / _RECORD).read_text())
        if not psutil.pid_exists(int(record["pid"])):
            return None
        ca = Path(record["ca"]) if record["ca"] else None
        return Endpoint(str(record["host"]), int(record["port"]), ca)
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def serving(
    server: EmbeddedServer,
    listen: str,
    port: int,
    password: str,
    *,
    own: TlsFiles | None = None,
    names: tuple[str, ...] = (),
) -> Iterator[Endpoint]:
    """Serve ``server`` on ``listen``:``port`` over TLS while in the block.

    Args:
        listen: addresses as PostgreSQL's ``listen_addresses`` (``*`` for all).
        password: the new password of role ``postgres`` (SCRAM).
        own: the user's certificate, key and CA; None makes them in ``<data dir>/tls``.
        names: more host names or addresses for the generated certificate.
    """
    if not listen or any(char in listen for char in "'\\\n\r"):
        raise InvalidArgument(f"invalid listen address {listen!r}")
    hosts = [part.strip() for part in listen.split(",") if part.strip()]
    files = own or ensure_certificates(server.data_dir / "tls", [*local_names(listen), *names])
    context = server_context(files)  # a bad certificate fails before anything changes
    server.serve("127.0.0.1", _free_loopback_port(), password)
    upstream = server.status()
    assert upstream.port is not None
    proxy = TlsProxy(None if "*" in hosts else hosts, port, ("127.0.0.1", upstream.port), context)
    record = server.data_dir / _RECORD
    try:
        try:
            proxy.start()
        except OSError as error:
            raise EmbeddedServerError(f"cannot listen on {listen} port {port}: {error}") from error
        endpoint = Endpoint(_public_host(listen), port, files.ca)
        record.write_text(json.dumps({"pid": os.getpid(), "host": endpoint.host, "port": port,
                                      "ca": str(files.ca) if files.ca else None}))  # fmt: skip
        yield endpoint
    finally:
        record.unlink(missing_ok=True)
        proxy.stop()
