"""Why a task is (not) running, in words, from the facts the query ``task_explain``
gathers (`scitq.db.task.task_explain`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from scitq.db.rows import BatchProgress, Explanation
from scitq.errors import WaitStalled
from scitq.states import HELD_TASK_STATUSES, FailureClass, TaskStatus, WorkerLiveness

logger = logging.getLogger(__name__)


def _timestamp(value: datetime | str | None) -> str:
    if value is None:
        return "never"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def size_text(count: int) -> str:
    """A byte count for people: ``12.3 MB``, ``4.56 GB``."""
    return f"{count / 1e6:.1f} MB" if count < 10**9 else f"{count / 1e9:.2f} GB"


def _attempt_outcome(facts: Mapping[str, Any]) -> str:
    outcome = facts["failure_class"] or facts["execution_status"]
    code = facts["return_code"]
    if code is not None:
        outcome = f"{outcome}, exit code {code}"
    reason = facts["failure_reason"]
    if reason and reason != f"exit code {code}":  # not "exit, exit code 1: exit code 1"
        outcome = f"{outcome}: {reason}"
    return f"attempt {facts['attempt']} on {facts['worker_name']} ended ({outcome})"


def _worker_state(worker: Mapping[str, Any]) -> str | None:
    """Why a worker claims nothing now, or None if it has a free slot."""
    if worker["liveness"] != WorkerLiveness.ONLINE:
        heartbeat = _timestamp(worker["last_heartbeat_at"])
        return f"{worker['name']} is {worker['liveness']} (last heartbeat {heartbeat})"
    if worker["is_paused"]:
        return f"{worker['name']} is paused"
    if worker["is_draining"]:
        return f"{worker['name']} is draining"
    free, floor = worker.get("disk_free_bytes"), worker.get("disk_floor_bytes")
    if free is not None and floor is not None and free < floor:
        return (
            f"{worker['name']} claims nothing: low disk ({size_text(free)} free on its work dir, "
            f"below its floor of {size_text(floor)})"
        )
    if worker["live"] >= worker["slots"]:
        return f"{worker['name']} is full ({worker['live']} of {worker['slots']} slots)"
    return None


def _explain_pending(facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What holds a pending task back; ``runnable`` when nothing does."""
    batch, workers = facts["batch"], facts["workers"]
    reasons = []
    if facts["available_at"] > facts["now"]:
        after = f" after {_attempt_outcome(facts)}" if facts["execution_id"] else ""
        until = _timestamp(facts["available_at"])
        reasons.append(("backoff", f"it is in retry back-off until {until}{after}"))
    if facts["batch_is_paused"]:
        resume = f"`scitq batch resume {batch}` resumes it"
        reasons.append(("batch_paused", f"batch {batch!r} is paused; {resume}"))
    states = [_worker_state(worker) for worker in workers]
    busy = ", ".join(state for state in states if state is not None)
    if not workers:
        start = f"start one with `scitq agent --batch {batch}`"
        reasons.append(("no_worker", f"no worker serves batch {batch!r}; {start}"))
    elif all(worker["liveness"] != WorkerLiveness.ONLINE for worker in workers):
        reasons.append(("no_live_worker", f"no live worker serves batch {batch!r}: {busy}"))
    elif None not in states:
        reasons.append(("workers_busy", f"every worker serving batch {batch!r} is busy: {busy}"))
    if reasons:
        return reasons
    free = ", ".join(
        f"{worker['name']} ({worker['slots'] - worker['live']} free)"
        for worker, state in zip(workers, states, strict=True)
        if state is None
    )
    ahead = "10000+" if facts["ahead"] >= 10000 else str(facts["ahead"])
    queue = f"{ahead} runnable tasks of the batch come before it"
    return [
        ("runnable", f"it is runnable and should be claimed soon: free slots on {free}; {queue}")
    ]


def explain(facts: Mapping[str, Any]) -> Explanation:
    """The explanation of a task from the row of the ``task_explain`` query."""
    task_id, status = facts["id"], facts["status"]
    since = _timestamp(facts["status_changed_at"])
    if status == TaskStatus.PENDING:
        reasons = _explain_pending(facts)
    elif status == TaskStatus.WAITING:
        deps = ", ".join(
            f"task {dep['id']}{' ' + repr(dep['name']) if dep['name'] else ''} ({dep['status']})"
            for dep in facts["unmet_dependencies"]
        )
        reasons = [("dependency", f"it waits for {deps or 'its dependencies'}")]
    elif status == TaskStatus.PAUSED:
        reasons = [(TaskStatus.PAUSED, f"it was paused at {since}; `scitq task resume {task_id}`")]
    elif status == TaskStatus.CANCELED:
        hint = f"`scitq task retry {task_id}` restores it"
        if facts["canceled_by_task_id"] is not None:
            hint += f" and retries task {facts['canceled_by_task_id']}"
        reason = facts["cancel_reason"] or TaskStatus.CANCELED
        reasons = [(TaskStatus.CANCELED, f"{reason} ({since}); {hint}")]
    elif status in HELD_TASK_STATUSES:
        verb = "is assigned to" if status == TaskStatus.ASSIGNED else "runs on"
        started = _timestamp(facts["run_started_at"] or facts["assigned_at"])
        phase = f"attempt {facts['attempt']}, {facts['execution_status']} since {started}"
        reasons = [(status, f"it {verb} worker {facts['worker_name']} ({phase})")]
    else:  # succeeded or failed
        message = _attempt_outcome(facts) if facts["execution_id"] else status
        if facts.get("cached_from_execution_id") is not None:
            message += (f" as a cache hit: nothing ran, the output of execution "
                        f"{facts['cached_from_execution_id']} is still in place")  # fmt: skip
        if status == TaskStatus.FAILED:
            lost = facts["failure_class"] == FailureClass.LOST
            left = "no free requeue left" if lost else "no retry left"
            message += f"; {left}: `scitq task retry {task_id}`"
        reasons = [(status, message)]
    if facts["attempt_count"]:
        reasons.append(("attempts", _attempts(facts)))
    (code, message), *others = reasons
    return Explanation(task_id, status, code, message, tuple(text for _, text in others))


def _attempts(facts: Mapping[str, Any]) -> str:
    """Attempts that spent a retry, apart from the free requeues (lost or handed back)."""
    return (
        f"{facts['attempts_used']} of {facts['retries'] + 1} attempts used; "
        f"{facts['requeue_count']} of {facts['requeues']} free requeues used "
        "(executions lost or handed back, which spend no retry)"
    )


def explanation(found: list[dict[str, Any]]) -> Explanation | None:
    """The result shape of ``task_explain``: the explanation of the task, if it exists."""
    return explain(found[0]) if found else None


#: Explanation codes that mean no worker can take the batch's tasks now.
UNSERVED_CODES = frozenset({"no_worker", "no_live_worker"})


class StallWatch:
    """Says why a wait makes no progress (`scitq.Client.wait`).

    A batch is quiet while its counts do not change and nothing of it runs. Once quiet
    for ``explain_after`` seconds, `check` explains its first runnable task to ``say``
    (a warning in the log by default), again when the reason changes or every ten times
    that long; when the reason has been that no worker serves the batch for
    ``give_up_after`` seconds, it raises `WaitStalled`.
    """

    def __init__(
        self,
        batch: str,
        explain_after: float | None,
        give_up_after: float | None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.batch = batch
        self.explain_after = explain_after
        self.give_up_after = give_up_after
        self.say = say or self._log
        self._counts: tuple[int, ...] = ()
        self._quiet_since = 0.0
        self._said: str | None = None
        self._said_at = 0.0
        self._asked_at: float | None = None
        self._unserved_since: float | None = None

    def _log(self, message: str) -> None:
        logger.warning("%s", message, extra={"action": "wait_stalled", "batch": self.batch})

    def check(
        self, progress: BatchProgress, now: float, why: Callable[[], Explanation | None]
    ) -> None:
        """Note a poll at ``now``; say why nothing happens, or give up, when it is time.

        Raises:
            WaitStalled: no worker could serve the batch for ``give_up_after`` seconds.
        """
        counts = (progress.done, progress.pending, progress.waiting, progress.paused)
        if counts != self._counts or progress.assigned + progress.running:
            self._counts, self._quiet_since, self._unserved_since = counts, now, None
            self._said = self._asked_at = None
            return
        if self.explain_after is None or now - self._quiet_since < self.explain_after:
            return
        if self._asked_at is None or now - self._asked_at >= self.explain_after:
            self._asked_at = now  # not at every poll: an explanation costs a few queries
            self._ask(now, why())
        since, limit = self._unserved_since, self.give_up_after
        if limit is not None and since is not None and now - since >= limit:
            quiet = now - self._quiet_since
            raise WaitStalled(
                f"batch {self.batch!r}: nothing ran for {quiet:.0f} s: {self._said}; "
                "gave up waiting"
            )

    def _ask(self, now: float, found: Explanation | None) -> None:
        reason = "no task is runnable" if found is None else found.message
        if found is None or found.code not in UNSERVED_CODES:
            self._unserved_since = None
        elif self._unserved_since is None:
            self._unserved_since = now
        if reason != self._said or now >= self._said_at + 10 * (self.explain_after or 0):
            self._said_at = now
            quiet = now - self._quiet_since
            self.say(f"batch {self.batch!r}: nothing ran for {quiet:.0f} s: {reason}")
        self._said = reason
