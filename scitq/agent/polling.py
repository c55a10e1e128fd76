"""Idle polling: exponential back-off with jitter, reset as soon as work is found.

With many agents on one database the idle poll rate is what the database pays for, so it
backs off to ``maximum``; jitter keeps agents started together from polling in step.
"""

from __future__ import annotations

import asyncio
import logging
import random

import psycopg
from psycopg import sql

from scitq.db.pooler import behind_pooler_async
from scitq.errors import ScitqError

logger = logging.getLogger(__name__)

#: The channel ``task_submit`` notifies (a hint: polling alone is correct).
NOTIFY_CHANNEL = "scitq_task_pending_v1"


class Backoff:
    """Successive waits from ``minimum`` doubling to ``maximum``, each with ±25 % jitter."""

    def __init__(self, minimum: float, maximum: float) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError(f"need 0 < minimum <= maximum, got {minimum} and {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self._current = minimum

    def reset(self) -> None:
        self._current = self.minimum

    def next(self) -> float:
        wait = self._current * random.uniform(0.75, 1.25)
        self._current = min(self.maximum, self._current * 2)
        return min(wait, self.maximum)


async def wait_any(*events: asyncio.Event, timeout: float) -> None:
    """Return when one of the events is set or after ``timeout`` seconds."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def listen_for_submissions(conninfo: str, wake: asyncio.Event) -> None:
    """Set ``wake`` on every NOTIFY of a submission, retrying now and then where LISTEN
    fails; return at once behind a connection pooler (PgBouncer), where a LISTEN would stay
    on a pooled server connection that no one reads: polling alone serves there."""
    backoff = Backoff(1.0, 60.0)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, connect_timeout=5, prepare_threshold=None
            ) as conn:
                if await behind_pooler_async(conn):
                    logger.info(
                        "behind a connection pooler: no LISTEN, polling only",
                        extra={"action": "listen_off_pooler"},
                    )
                    return
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
                backoff.reset()
                async for _ in conn.notifies():
                    wake.set()
        except (psycopg.Error, ScitqError) as exc:
            logger.debug("LISTEN unavailable: %s", exc, extra={"action": "listen_error"})
        await asyncio.sleep(backoff.next())
