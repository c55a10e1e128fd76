"""The download phase of an execution: its inputs and resources (`scitq.agent.stager`),
then its container image, pulled on first use (`scitq.agent.images`). The phase's time is
what the execution records as ``downloading`` (from ``download_started_at`` to
``run_started_at``)."""

from __future__ import annotations

import asyncio
from typing import Any

from scitq.agent.diskpolicy import DiskPolicy
from scitq.agent.held import Held, not_started
from scitq.agent.images import ImagePuller
from scitq.agent.process import CommandResult
from scitq.agent.stager import Stager
from scitq.agent.task_cache import TaskCache
from scitq.states import FailureClass


def needs_download_phase(claim: dict[str, Any]) -> bool:
    """Whether an execution has anything to fetch before its command: data or an image."""
    return Stager.needs_download(claim) or bool(claim["container"])


async def download_phase(
    held: Held, stager: Stager, images: ImagePuller, disk: DiskPolicy, task_cache: TaskCache
) -> CommandResult | None:
    """Fetch what ``held`` needs; the failed result when something cannot be fetched, or
    the succeeded one of a cache hit (``use_cache``: an earlier success's output is in
    place, nothing is fetched or run)."""
    claim = held.claim
    if stager.needs_download(claim):
        if (hit := await task_cache.lookup(held)) is not None:
            return hit
        held.staging = stager.start_download(claim, held.work_dir, held.cancel_staging)
        moved = await stager.download(claim, held.staging, held.cancel_staging)
        held.bytes_in = moved.bytes
        if moved.failure is not None:
            return not_started(moved.failure, FailureClass.DOWNLOAD)
        if moved.bytes and claim.get("resources") and disk.cache_cap is not None:
            await asyncio.to_thread(disk.cap_cache)  # the resource cache grew
    if claim["container"]:
        problem = await images.prepare(claim["container"], held.output.write)
        if problem is not None:
            return not_started(problem.reason, problem.failure_class)
    return None
