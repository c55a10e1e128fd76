"""Retries with exponential back-off and jitter, and deadlines that grow with size."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from scitq.config import TransferSettings
from scitq.errors import TransferError
from scitq.transfer.registry import Progress

log = logging.getLogger(__name__)

T = TypeVar("T")


class StopFlag(Protocol):
    """What `threading.Event` offers and transfers check (``cancel`` arguments)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class EitherFlag:
    """Set as soon as any of its flags is set."""

    def __init__(self, *flags: StopFlag | None) -> None:
        self._flags = [flag for flag in flags if flag is not None]

    def is_set(self) -> bool:
        return any(flag.is_set() for flag in self._flags)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                return False
            time.sleep(left)
        return True


class Cancelled(TransferError):
    """A transfer stopped because its deadline passed or it was told to stop."""


class Interrupted(Cancelled):
    """A transfer stopped because its stop flag was set: the caller canceled it, or a
    sibling transfer failed (then the sibling's error is the one to report)."""

    def __init__(self, uri: str, *, direction: str = "download") -> None:
        super().__init__(uri, "transfer canceled", direction=direction, retryable=False)


def backoff_seconds(attempt: int, settings: TransferSettings) -> float:
    """The pause before retry number ``attempt`` (0-based): exponential, capped, jittered."""
    ceiling = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2**attempt)
    return float(ceiling * random.uniform(0.5, 1.0))  # jitter, not security


def item_timeout(size: int, settings: TransferSettings) -> float:
    """The time one item may take: a base plus its size at the slowest accepted rate."""
    rate = max(settings.timeout_min_rate_bytes, 1.0)
    return settings.timeout_base_seconds + size / rate


def guarded_progress(
    uri: str,
    direction: str,
    deadline: float | None,
    stop: StopFlag | None,
    progress: Progress | None,
) -> Progress:
    """A progress callback that also ends the transfer past ``deadline`` or on ``stop``.

    Transports call progress after every chunk, so raising here aborts them between
    chunks; a stall without chunks is ended by the sockets' read timeouts.
    """

    def report(count: int) -> None:
        if stop is not None and stop.is_set():
            raise Interrupted(uri, direction=direction)
        if deadline is not None and time.monotonic() > deadline:
            raise Cancelled(uri, "timed out", direction=direction)
        if progress is not None:
            progress(count)

    return report


def with_retries(
    action: Callable[[int], T],
    settings: TransferSettings,
    uri: str,
    stop: StopFlag | None = None,
) -> T:
    """Call ``action(attempt)`` until it succeeds, retrying retryable `TransferError`s.

    Args:
        action: one attempt; receives the attempt number (0 first).
        settings: ``retries`` and the back-off parameters.
        uri: for logs.
        stop: when set, no further attempt starts.

    Raises:
        TransferError: the last failure, or the first that is not retryable.
    """
    attempt = 0
    while True:
        try:
            return action(attempt)
        except TransferError as exc:
            if not exc.retryable or attempt >= settings.retries or (stop and stop.is_set()):
                raise
            pause = backoff_seconds(attempt, settings)
            log.warning(
                "transfer failed, retrying",
                extra={"uri": uri, "reason": exc.reason, "attempt": attempt + 1, "pause": pause},
            )
            if stop is not None:
                if stop.wait(pause):
                    raise
            else:
                time.sleep(pause)
            attempt += 1
