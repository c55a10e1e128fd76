"""scitq v1's ``use_cache`` on the agent: a cache hit instead of a run.

Where the check happens: the database does the cheap part at claim time. A task with
use_cache carries a cache key computed when it is submitted or edited (a digest of its
command, shell, container and options, inputs, resources, output and env:
``scitq.task_cache_key``), and ``task_claim_v2`` returns, for such a task only, the
latest earlier successes that ran that key (a range of ``execution_cache_key_idx``: an
execution keeps the key it ran, whatever later edits of its task change; a claimed task
without use_cache costs one primary-key read). What the database cannot
know is checked here, before anything is downloaded, in the execution's download phase:

1. the inputs and resources are listed (no download): path, size and MD5 (S3 ETag) or
   modification time of every file, digested into the *input fingerprint*;
2. a candidate whose recorded fingerprint is the same, and whose output files
   ({relative path: size}, recorded when it succeeded) are all still in the output
   folder with their sizes, is a hit: the execution records it
   (``execution_record_cache_v1``) and finishes as a success without running;
3. otherwise the task runs as usual, and when it succeeds the agent records its
   fingerprint and the files it left in ``output/``, so that later tasks can reuse it.

A listing that fails (a missing input, a store that is down) means no hit: the task runs
and its download reports the real problem. Only tasks with use_cache pay for listings.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from scitq import errors
from scitq.agent.held import Held
from scitq.agent.link import DatabaseLink, DatabaseUnavailable
from scitq.agent.process import CommandResult
from scitq.config import TransferSettings
from scitq.db.execution import execution_record_cache
from scitq.transfer.disk import walk_files
from scitq.transfer.registry import transport_for
from scitq.transfer.staging import as_folder, as_uri

logger = logging.getLogger(__name__)


def input_fingerprint(claim: Mapping[str, Any], settings: TransferSettings) -> str:
    """The digest of the listing of a claim's inputs and resources (raises TransferError)."""
    listing = []
    for role in ("inputs", "resources"):
        for text in claim.get(role) or ():
            uri = as_uri(text)
            entries = sorted(
                (entry.path, entry.size, entry.md5 or entry.mtime)
                for entry in transport_for(uri, settings).list(uri, recursive=True)
            )
            listing.append([role, text, entries])
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def output_in_place(
    output: str | None, manifest: Mapping[str, int], settings: TransferSettings
) -> bool:
    """Whether every file of ``manifest`` is in the output folder, with its size."""
    if not manifest:
        return True
    if not output:
        return False
    uri = as_folder(as_uri(output))
    found = {
        entry.path: entry.size for entry in transport_for(uri, settings).list(uri, recursive=True)
    }
    return all(found.get(path) == size for path, size in manifest.items())


def find_hit(
    claim: Mapping[str, Any], settings: TransferSettings
) -> tuple[str, dict[str, Any] | None]:
    """The input fingerprint of a claim, and the candidate it may reuse (or None)."""
    fingerprint = input_fingerprint(claim, settings)
    candidates: Sequence[dict[str, Any]] = claim.get("cache_candidates") or ()
    for candidate in candidates:
        if candidate["input_fingerprint"] != fingerprint:
            continue
        try:
            if output_in_place(claim.get("output"), candidate["output_manifest"], settings):
                return fingerprint, candidate
        except errors.TransferError:
            continue  # its output folder is gone
    return fingerprint, None


#: The result of an execution that reused an earlier one's output.
CACHE_HIT = CommandResult(
    return_code=0, failure_class=None, failure_reason=None, wall_seconds=0.0,
    cpu_user_seconds=None, cpu_system_seconds=None, peak_rss_bytes=None,
)  # fmt: skip


class TaskCache:
    """The cache checks and records of the executions of one agent."""

    def __init__(self, link: DatabaseLink, settings: TransferSettings) -> None:
        self.link = link
        self.settings = settings
        #: execution id -> (input fingerprint, the candidate reused or None)
        self._found: dict[int, tuple[str, dict[str, Any] | None]] = {}

    async def lookup(self, held: Held) -> CommandResult | None:
        """`CACHE_HIT` if the claim's task may reuse an earlier success, else None."""
        if not held.claim.get("use_cache"):
            return None
        try:
            found = await asyncio.to_thread(find_hit, held.claim, self.settings)
        except (errors.TransferError, errors.InvalidUri) as exc:
            extra = {"action": "cache_unchecked", "execution_id": held.execution_id}
            logger.info("execution %d: no cache check (%s)", held.execution_id, exc, extra=extra)
            return None
        self._found[held.execution_id] = found
        candidate = found[1]
        if candidate is None:
            return None
        held.cached_from = int(candidate["execution_id"])
        message = (f"cache hit: the output of execution {held.cached_from} (task "
                   f"{candidate['task_id']}) is in place and its inputs list the same; "
                   "nothing runs\n")  # fmt: skip
        held.output.write("scitq", message.encode())
        logger.info(
            "%s", message.strip(), extra={"action": "cache_hit", "execution_id": held.execution_id}
        )
        return CACHE_HIT

    async def record(self, held: Held, worker_id: int, result: CommandResult) -> None:
        """Before the finish of a use_cache execution: what it listed, left or reused."""
        found = self._found.pop(held.execution_id, None)
        if found is None or held.dead:
            return
        fingerprint, candidate = found
        if candidate is not None:
            manifest = candidate["output_manifest"]
        elif result.failure_class is None and result.return_code == 0:
            output = held.work_dir / "output"
            manifest = {relative: path.stat().st_size for path, relative in walk_files(output)}
        else:
            return  # a failure is no cache
        try:
            await self.link.call(
                execution_record_cache.run_async, worker_id, held.execution_id, fingerprint,
                manifest, held.cached_from,
            )  # fmt: skip
        except (DatabaseUnavailable, errors.ScitqError) as exc:
            # the finish goes on: this execution is just not reusable (a hit still is one)
            extra = {"action": "cache_record_failed", "execution_id": held.execution_id}
            logger.warning("execution %d: cache record not stored (%s)", held.execution_id, exc,
                           extra=extra)  # fmt: skip
