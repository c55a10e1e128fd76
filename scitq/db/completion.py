"""Hearing that a batch ended: LISTEN on a coalesced notification, with polling as the
fallback.

``scitq.task_set_status`` notifies channel ``scitq_batch_ended_v1`` with a batch's id
when a change leaves the batch without a live task (once per batch and transaction;
nothing while tasks merely end: every NOTIFY serializes commits server-wide). A waiter
(`scitq.Client.wait`) re-reads the batch's counts when it hears one, and every
``interval`` seconds whatever it hears (for its progress, and as the fallback: PgBouncer
in transaction pooling accepts the LISTEN but drops what it would deliver; two
transactions ending a batch's last tasks at once may each see the other's live and
send none): the wait then ends at the next read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from scitq import errors

T = TypeVar("T")

#: The channel ``task_set_status`` notifies (payload: the batch id).
CHANNEL = "scitq_batch_ended_v1"
#: A waiter reads the counts at most this often.
MIN_GAP_SECONDS = 0.04


class EndedTasks:
    """Wakes a waiter when one batch ends, on an autocommit connection it shares.

    ``conn`` is that connection, or a function returning it (`scitq.Client`'s, reopened
    after a failover: LISTEN is then said again on the new one). ``listening`` is False
    where LISTEN failed: `wait` then only sleeps.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any] | Callable[[], psycopg.Connection[Any]],
        batch_id: int,
    ) -> None:
        self._get = conn if callable(conn) else lambda: conn
        self._conn: psycopg.Connection[Any] | None = None
        self._payload = str(batch_id)
        self._read_at = self._read_seconds = 0.0
        self.listening = self._listen() is not None

    def _listen(self) -> psycopg.Connection[Any] | None:
        """The connection LISTEN holds on (said again on a new one); None if it fails."""
        try:
            conn = self._get()
            if conn is not self._conn:
                self._conn = None
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                self._conn = conn
        except (psycopg.Error, errors.DatabaseError):  # refused, or the database is away
            return None
        return self._conn

    def __enter__(self) -> EndedTasks:
        return self

    def __exit__(self, *_: object) -> None:
        if self._conn is not None and not self._conn.broken:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(CHANNEL)))

    def timed(self, read: Callable[[str], T], batch: str) -> T:
        """``read(batch)``, timed for `pause`."""
        self._read_at = time.monotonic()
        try:
            return read(batch)
        finally:
            self._read_seconds = time.monotonic() - self._read_at

    def pause(self, interval: float, left: float | None) -> None:
        """Wait after the last `timed` read: until the batch ends (listening) or for
        ``interval`` seconds, at most ``left`` seconds; and never less than
        `MIN_GAP_SECONDS` nor ten times the read after it began, so that a wait keeps
        the database busy at most a tenth of the time."""
        busy = max(MIN_GAP_SECONDS, 10 * self._read_seconds)
        pause = max(interval, busy)
        self.wait(pause if left is None else min(pause, left))
        time.sleep(max(0.0, min(self._read_at + busy - time.monotonic(), left or busy)))

    def wait(self, seconds: float) -> bool:
        """Return when the batch has ended (True), or after ``seconds`` (False)."""
        if seconds <= 0:
            return False
        deadline = time.monotonic() + seconds
        conn = self._listen() if self.listening else None
        heard = False
        try:
            while conn is not None and not heard and (left := deadline - time.monotonic()) > 0:
                for notify in conn.notifies(timeout=left, stop_after=1):
                    heard = heard or notify.payload == self._payload
            if heard and conn is not None:  # those queued meanwhile say nothing more
                for _ in conn.notifies(timeout=0):
                    pass
        except psycopg.Error:  # the connection broke: the caller's next read reopens it
            pass
        if not heard:
            time.sleep(max(0.0, deadline - time.monotonic()))
        return heard
