"""The TLS front of `scitq db serve`: the embedded PostgreSQL binaries are built without
OpenSSL, so the serving process itself speaks TLS to agents and relays each connection
to the server on the loopback interface, where SCRAM still checks the password.

PostgreSQL's own negotiation is followed: a client opens with an ``SSLRequest``, is
answered ``S`` and does its TLS handshake; a ``GSSENCRequest`` is answered ``N``. A
client that starts in clear text (``sslmode=disable``, or a cancel request from libpq
before 17) is refused with a FATAL error unless it comes from a loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import struct
import threading
from collections.abc import Sequence

logger = logging.getLogger(__name__)

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_HANDSHAKE_SECONDS = 30.0
_CHUNK = 65536
REFUSAL = (
    "scitq db serve: connections from other machines must use TLS "
    "(sslmode=verify-full with the CA that scitq db create-role names)"
)


def _error_response(message: str) -> bytes:
    """A PostgreSQL ErrorResponse (FATAL, SQLSTATE 28000) with ``message``."""
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", "28000"), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class TlsProxy:
    """Listens on ``hosts``:``port`` (None: every address), relays to ``upstream``."""

    def __init__(
        self,
        hosts: Sequence[str] | None,
        port: int,
        upstream: tuple[str, int],
        context: ssl.SSLContext,
    ) -> None:
        self.hosts, self.port, self.upstream, self.context = hosts, port, upstream, context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scitq-tls",
                                        daemon=True)  # fmt: skip
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        """Bind and serve in a thread; raises OSError if the address is taken."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._bind(), self._loop)
        try:
            future.result(timeout=30)
        except BaseException:
            self.stop()
            raise

    async def _bind(self) -> None:
        hosts = list(self.hosts) if self.hosts else None
        self._server = await asyncio.start_server(self._serve, hosts, self.port)

    def stop(self) -> None:
        """Close the listener and every relayed connection."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        try:
            first = await self._negotiate(reader, writer, address)
            if first is None:
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as error:
            logger.info("connection from %s dropped: %s", address, error,
                        extra={"action": "tls_proxy", "address": address})  # fmt: skip
            writer.close()
            return
        up_writer.write(first)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _negotiate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str
    ) -> bytes | None:
        """TLS for whoever asks; the bytes to relay first (a clear-text start from the
        loopback), or None when the client was refused."""
        while True:
            head = await asyncio.wait_for(reader.readexactly(8), _HANDSHAKE_SECONDS)
            length, code = struct.unpack("!II", head)
            if code == _GSSENC_REQUEST and length == 8:
                writer.write(b"N")
                await writer.drain()
                continue
            if code == _SSL_REQUEST and length == 8:
                writer.write(b"S")
                await writer.drain()
                await asyncio.wait_for(writer.start_tls(self.context), _HANDSHAKE_SECONDS)
                return b""
            if is_loopback(address):
                return head
            logger.warning("refused a clear-text connection from %s", address,
                           extra={"action": "tls_required", "address": address})  # fmt: skip
            writer.write(_error_response(REFUSAL))
            await writer.drain()
            writer.close()
            return None
