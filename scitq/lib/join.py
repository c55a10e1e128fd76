"""`Server.join`: wait for a list of tasks as scitq v1 did, and say when they cannot run.

v1's ``join(tasks, retry=1, check=False)`` polled the tasks' statuses, set the failed
ones back to pending up to ``retry`` times each (on top of the tasks' own retries),
printed a progress line per poll and returned the count of tasks per status. It waited
forever when nothing could run them; this one asks `scitq.Client.explain` why the first
pending task of each batch does not start and, when no worker serves it, none is being
deployed and no recruiter can deploy one (there is none, or its deploys fail), gives up
after ``give_up_after`` seconds with that reason.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from scitq.client import Client
from scitq.db.recruitment import instance_list, recruiter_list
from scitq.db.task import task_list
from scitq.errors import WaitStalled, WaitTimeout
from scitq.lib.shapes import V1_ACCEPTED, V1_TASK_STATUSES, field_of
from scitq.states import InstanceStatus, TaskStatus


class Server(Protocol):
    """What join needs of `scitq.lib.Server` (which calls it)."""

    client: Client

    def task_status(self, task_id_list: Sequence[int]) -> list[str]: ...


#: The v1 statuses join waits for (v1 did not wait for waiting tasks; this one does,
#: since scitq cancels them when a dependency fails for good). Paused ones, as in v1,
#: do not hold the join.
WAITED = frozenset({TaskStatus.WAITING, TaskStatus.PENDING, TaskStatus.ASSIGNED, V1_ACCEPTED,
                    TaskStatus.RUNNING})  # fmt: skip
#: Explanation codes of a pending task no worker can take now (see scitq.db.explain).
UNSERVED = frozenset({"no_worker", "no_live_worker"})
#: Polls start this often and slow down to `MAX_INTERVAL` while nothing changes.
FIRST_INTERVAL = 0.5
MAX_INTERVAL = 10.0
#: How often (s) the reason why nothing runs is looked for (a few queries).
CHECK_INTERVAL = 5.0
_STARTING = (InstanceStatus.REQUESTED, InstanceStatus.BUILDING, InstanceStatus.ACTIVE)


def _progress_line(counts: dict[str, int]) -> str:
    return (
        f"Remaining tasks pending : {counts[TaskStatus.PENDING]}, "
        f"assigned: {counts[TaskStatus.ASSIGNED]}, accepted: {counts[V1_ACCEPTED]}, "
        f"running: {counts[TaskStatus.RUNNING]}, failed: {counts[TaskStatus.FAILED]}, "
        f"succeeded: {counts[TaskStatus.SUCCEEDED]}"
    )


def join_tasks(
    server: Server,
    task_list: Sequence[Any],
    retry: int,
    check: bool,
    timeout: float | None,
    give_up_after: float | None,
) -> dict[str, int]:
    """See `scitq.lib.Server.join`."""
    if not task_list:
        raise RuntimeError("task_list should not be empty")
    ids = [int(field_of(task, "task_id")) for task in task_list]
    labels = {}
    for task, task_id in zip(task_list, ids, strict=True):
        try:
            labels[task_id] = field_of(task, "name") or task_id
        except (KeyError, AttributeError):
            labels[task_id] = task_id
    retried = dict.fromkeys(ids, 0)
    given_up: set[int] = set()
    started = time.monotonic()
    watch = _Stall(server, give_up_after)
    interval, line = FIRST_INTERVAL, ""
    while True:
        counts = dict.fromkeys(V1_TASK_STATUSES, 0)
        done = True
        waiting: list[int] = []
        for task_id, status in zip(ids, server.task_status(ids), strict=True):
            if status == TaskStatus.FAILED and retried[task_id] < retry:
                retried[task_id] += 1
                print(f"Retrying task {labels[task_id]} [{retried[task_id]}/{retry}]...")
                server.client.retry([task_id])
                status, done = TaskStatus.PENDING, False
            elif status == TaskStatus.FAILED and task_id not in given_up:
                print(f"Task {labels[task_id]} failed too many times giving up")
                given_up.add(task_id)
            elif status in WAITED:
                done = False
                waiting.append(task_id)
            counts[status] += 1
        if (current := _progress_line(counts)) != line:
            print(current, flush=True)
            line, interval = current, FIRST_INTERVAL
        if done:
            break
        now = time.monotonic()
        if timeout is not None and now - started >= timeout:
            raise WaitTimeout(
                f"join: {len(waiting)} of {len(ids)} tasks still to run after {timeout:g} s"
            )
        watch.check(waiting, counts, now)
        pause = interval if timeout is None else min(interval, timeout - (now - started))
        time.sleep(max(pause, 0.0))
        interval = min(interval * 1.5, MAX_INTERVAL)
    if check and counts[TaskStatus.FAILED] > 0:
        raise RuntimeError("Could not complete all the tasks...")
    print("All tasks done!")
    return counts


class _Stall:
    """Tracks for how long nothing could run the tasks joined, and why."""

    def __init__(self, server: Server, give_up_after: float | None) -> None:
        self.server = server
        self.give_up_after = give_up_after
        self.since: float | None = None
        self.checked_at: float | None = None
        self.reason = ""

    def check(self, waiting: list[int], counts: dict[str, int], now: float) -> None:
        """Note a poll; raise `WaitStalled` once nothing could run them for too long."""
        if self.give_up_after is None:
            return
        if counts[TaskStatus.ASSIGNED] + counts[V1_ACCEPTED] + counts[TaskStatus.RUNNING]:
            self.since = None  # something runs
            return
        every = min(CHECK_INTERVAL, self.give_up_after / 4)
        if self.checked_at is not None and now - self.checked_at < every:
            return
        self.checked_at = now
        reason = self._why(waiting)
        if reason is None:
            self.since = None
            return
        if self.since is None:
            self.since = now
        self.reason = reason
        if now - self.since >= self.give_up_after:
            raise WaitStalled(
                f"join: the tasks cannot run: {reason} (for {now - self.since:.0f} s; "
                "gave up waiting)"
            )

    def _why(self, waiting: list[int]) -> str | None:
        """Why no pending task can start (None when one can, or soon will)."""
        client = self.server.client
        found = task_list(client.connection, limit=len(waiting), task_ids=waiting)
        pending = [task for task in found if task.status == TaskStatus.PENDING]
        if not pending:
            return None  # waiting for dependencies, or about to be claimed
        first: dict[str, int] = {}
        for task in pending:
            first.setdefault(task.batch, task.id)
        instances = instance_list(client.connection)
        recruiters = recruiter_list(client.connection)
        reasons = []
        for batch, task_id in first.items():
            why = client.explain(task_id)
            if why.code not in UNSERVED:
                return None
            patience = self.give_up_after or 0.0
            reason = _unserved(batch, why.message, instances, recruiters, patience)
            if reason is None:
                return None
            reasons.append(reason)
        return "; ".join(reasons)


def _unserved(
    batch: str,
    explained: str,
    instances: list[dict[str, Any]],
    recruiters: list[dict[str, Any]],
    patience: float,
) -> str | None:
    """Why batch ``batch`` will get no worker, or None if one is coming."""
    mine = [i for i in instances if i["batch"] == batch]
    failed = [i for i in mine if i["status"] == InstanceStatus.ERROR]
    starting = [i for i in mine if i["status"] in _STARTING]
    # failing: deploys failed and none ever gave a worker (a retry may be on its way)
    failing = failed and all(i["worker_id"] is None for i in mine)
    if failing and (not starting or len(failed) >= 2):
        error = failed[-1]["last_operation_error"] or "no reason recorded"
        return (
            f"{explained}; deploying workers for it fails "
            f"({len(failed)} failed, last: {error}); see `scitq recruiter operations`"
        )
    if starting:
        # asked for long ago and still not taken up: no scheduler runs the deploys
        now = datetime.now(UTC)
        requested = [
            i
            for i in starting
            if i["status"] == InstanceStatus.REQUESTED
            and (now - i["created_at"]).total_seconds() >= patience
        ]
        if len(requested) == len(starting):
            return (
                f"{explained}; {len(requested)} worker(s) were asked for but no scheduler "
                "deploys them: is `scitq scheduler` (or `scitq up`) running?"
            )
        return None
    if any(r["batch"] == batch for r in recruiters):
        return None  # its recruiter deploys when the scheduler runs its duty
    return f"{explained}, no worker is being deployed for it and it has no recruiter"
