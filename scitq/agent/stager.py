"""Data staging for one execution: inputs and resources in, the output folder out.

The transfers themselves are `scitq.transfer`'s (synchronous, run in threads here).
Inputs go to the execution's ``input/`` (in parallel, each retried); resources are
downloaded once per machine into the resource cache and linked read-only into
``resource/``; after the command, ``output/`` is uploaded to the task's output URI,
whether the command succeeded or not. A failure becomes the execution's result, class
``download`` or ``upload``, with the URI and the reason; the task's retry policy then
decides what happens.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scitq import errors
from scitq.config import TransferSettings
from scitq.transfer.cache import ResourceCache
from scitq.transfer.staging import stage_inputs, upload_outputs

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Transferred:
    """Bytes moved, or why the transfer failed (``failure`` is the execution's reason)."""

    bytes: int
    failure: str | None = None


class Stager:
    """Moves the data of executions; one per agent (it owns the resource cache)."""

    def __init__(self, settings: TransferSettings) -> None:
        self.settings = settings
        self._cache: ResourceCache | None = None

    @property
    def cache(self) -> ResourceCache:
        if self._cache is None:  # created on first use: most agents never need one
            self._cache = ResourceCache(self.settings)
        return self._cache

    def cache_if_any(self) -> ResourceCache | None:
        """The resource cache, if this agent or another one of the machine made it."""
        if self._cache is None and not self.settings.cache_dir.is_dir():
            return None
        return self.cache

    @staticmethod
    def needs_download(claim: dict[str, Any]) -> bool:
        # use_cache: the cache check lists the inputs in the download phase (task_cache)
        return bool(claim.get("inputs") or claim.get("resources") or claim.get("use_cache"))

    def start_download(
        self, claim: dict[str, Any], work_dir: Path, cancel: threading.Event
    ) -> asyncio.Future[int]:
        """Start fetching the claim's inputs and resources; the future gives bytes in.

        The transfers run in threads: setting ``cancel`` stops them between chunks, and
        the future says when they no longer touch ``work_dir``.
        """
        inputs: Sequence[str] = claim.get("inputs") or ()
        resources: Sequence[str] = claim.get("resources") or ()
        return asyncio.ensure_future(
            asyncio.to_thread(self._download, inputs, resources, work_dir, cancel)
        )

    async def download(
        self, claim: dict[str, Any], running: asyncio.Future[int], cancel: threading.Event
    ) -> Transferred:
        """Wait for ``running`` (from `start_download`) within the task's download timeout."""
        timeout = claim.get("download_timeout_seconds")
        try:
            moved = await asyncio.wait_for(asyncio.shield(running), timeout)
        except TimeoutError:
            cancel.set()
            return Transferred(0, f"download timeout of {timeout:g} s exceeded")
        except errors.TransferError as exc:
            return Transferred(0, str(exc))
        except (errors.ScitqError, OSError) as exc:  # a URI that no longer parses, a full disk
            return Transferred(0, f"cannot download: {exc}")
        return Transferred(moved)

    def _download(
        self,
        inputs: Sequence[str],
        resources: Sequence[str],
        work_dir: Path,
        cancel: threading.Event,
    ) -> int:
        moved = 0
        if inputs:
            moved += stage_inputs(inputs, work_dir / "input", self.settings, cancel=cancel)
        for uri in resources:
            moved += self.cache.link_into(uri, work_dir / "resource", cancel=cancel)
        return moved

    async def upload(self, claim: dict[str, Any], work_dir: Path) -> Transferred:
        """Upload ``output/`` to the claim's output URI (nothing to do without one)."""
        output = claim.get("output")
        if not output:
            return Transferred(0)
        try:
            moved = await asyncio.to_thread(
                upload_outputs, work_dir / "output", output, self.settings
            )
        except errors.TransferError as exc:
            return Transferred(0, str(exc))
        except (errors.ScitqError, OSError) as exc:
            return Transferred(0, f"cannot upload: {exc}")
        return Transferred(moved)
