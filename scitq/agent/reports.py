"""Phases and results of all executions, sent to the database in few round trips.

Executions hand their phase changes and their results to the `Reporter` instead of
calling the database themselves. Its loop sends what is pending: phases (one call per
phase, for every execution that reached it, in the order the phases happen) and all the
results in one call (`Reporter.run` says in which order). A report leaves at once when
the loop is idle; while a round trip is in flight the next reports gather, so under load
one call carries many executions (this is what makes short tasks cheap: a few
transactions per batch of finished tasks instead of two per task).

Claims ride along: a pass that carries results also claims, last in the same
transaction, as many tasks as the slots those results free plus the slots already free
(`ClaimHook`): one round trip reports a batch of finished tasks and refills their slots
(River's batched completer does the same). The stored functions are the same ones the
agent calls alone (``execution_finish_v1``, ``task_claim_v1``), so fencing, leases and
the claim bound are theirs; if any part is refused the whole pass is rolled back (the
claim with it) and the claim loop claims on its own. A pass of phases only waits up to
``PHASE_DELAY_SECONDS`` for results to join it: a short task's ``running`` and its result
then travel together (its ``run_started_at`` is the report's time; its wall time is the
agent's measure either way), while a long task's phase is stored within that delay.

Faults: while the database is unreachable, everything stays queued and the loop retries
with back-off; nothing is dropped. An execution the database says is no longer ours
(SQLSTATE SQ001, with its id) is left out, its copy stopped through ``on_not_live``, and
the rest is sent again at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from scitq import errors
from scitq.agent.link import DatabaseLink, DatabaseUnavailable
from scitq.agent.polling import Backoff
from scitq.db.execution import execution_finish, execution_set_phases
from scitq.db.query import Row, Statement
from scitq.db.task import task_claim
from scitq.states import EXECUTION_PHASES, ExecutionStatus

logger = logging.getLogger(__name__)

#: Phases the agent reports, in the order an execution goes through them (the claim
#: made it ``assigned``).
PHASES = EXECUTION_PHASES[1:]

Report = Mapping[str, Any]
Pending = dict[int, tuple[Report, "asyncio.Future[bool]"]]
#: How long a pass of phases alone waits for results to join it.
PHASE_DELAY_SECONDS = 0.05
#: Once results come, how long without another ends the wait for them.
QUIET_SECONDS = 0.002


#: A claim riding on a report also asks for this many times the concurrency more than the
#: free slots: read-ahead, which ``task_claim_v1`` grants only while the worker's tasks are
#: short (under 0.5 s on average, none of 2 s), so that its slots refill from what it holds
#: instead of waiting for the next pass. Long tasks are never held ahead beyond prefetch,
#: nor while a held execution has data or an image to fetch (staging and the resource
#: cache then work as without read-ahead).
#: Executions whose command has ended do not count here; the database, which counts them
#: until their report is stored, allows 8 x concurrency in all.
READ_AHEAD = 3


@dataclass(frozen=True, slots=True)
class ClaimHook:
    """How a pass claims: ``size(finishing)`` is how many tasks to ask for when
    ``finishing`` held executions are being reported (0: none); ``take(rows)`` gets the
    claimed rows once the pass is stored."""

    size: Callable[[int], int]
    take: Callable[[list[Row]], None]


class Reporter:
    """Queues phase changes and results; `run` sends them in batches."""

    def __init__(
        self,
        link: DatabaseLink,
        worker_id: int,
        on_not_live: Callable[[list[int]], None],
        claims: ClaimHook | None = None,
    ) -> None:
        self._link = link
        self._worker_id = worker_id
        self._on_not_live = on_not_live
        self._claims = claims
        self._phases: dict[ExecutionStatus, list[int]] = {phase: [] for phase in PHASES}
        self._results: Pending = {}
        self._pending = asyncio.Event()
        self._result_arrived = asyncio.Event()
        #: Round trips made, for tests and benchmarks.
        self.calls = 0
        #: Tasks claimed along with results.
        self.claimed = 0

    def set_phase(self, execution_id: int, phase: ExecutionStatus) -> None:
        """Record that an execution reached ``phase`` (sent with the next batch)."""
        if phase not in self._phases:
            raise ValueError(f"unknown phase {phase!r}: use one of {', '.join(PHASES)}")
        self._phases[phase].append(execution_id)
        self._pending.set()

    async def finish(self, report: Report) -> bool:
        """Send an execution's result; True once stored, False if it was no longer ours.

        Waits as long as the database is unreachable.
        """
        execution_id = int(report["execution_id"])
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._results[execution_id] = (report, done)
        self._pending.set()
        self._result_arrived.set()
        return await done

    async def run(self) -> None:
        """Send what is pending, for ever (cancel to stop)."""
        backoff = Backoff(0.5, 30.0)
        while True:
            await self._pending.wait()
            if not self._results:  # phases only: let the results of short tasks join
                await self._gather_results()
            self._pending.clear()
            self._result_arrived.clear()
            try:
                if not await self._send_together():
                    # Something was refused (an execution no longer ours...): nothing of
                    # the pass was stored; send it call by call, leaving out the refused.
                    # Results go before the phases of other executions: a slot freed by a
                    # finished command is taken by the next one, whose start must not be
                    # recorded before the end of the one it replaced. The phases of the
                    # finishing executions themselves go first, so they are complete.
                    await self._send_phases(set(self._results))
                    await self._send_results()
                    await self._send_phases()
            except DatabaseUnavailable:
                self._pending.set()
                await asyncio.sleep(backoff.next())
            else:
                backoff.reset()

    async def _gather_results(self) -> None:
        """Wait up to `PHASE_DELAY_SECONDS` for results, and once they come, until none
        has come for `QUIET_SECONDS`: the executions started together by one pass end
        together, and their results then go in one pass, not one pass for the first."""
        deadline = asyncio.get_running_loop().time() + PHASE_DELAY_SECONDS
        timeout = PHASE_DELAY_SECONDS
        while timeout > 0:
            self._result_arrived.clear()
            try:
                await asyncio.wait_for(self._result_arrived.wait(), timeout)
            except TimeoutError:
                return
            timeout = min(QUIET_SECONDS, deadline - asyncio.get_running_loop().time())

    async def _send_together(self) -> bool:
        """The whole pass in one transaction and one round trip, in the order of `run`.

        Returns False, with everything queued again, if the database refused any of it.
        """
        phases, self._phases = self._phases, {phase: [] for phase in PHASES}
        results, self._results = self._results, {}
        first = [(p, [i for i in phases[p] if i in results]) for p in PHASES]
        rest = [(p, [i for i in phases[p] if i not in results]) for p in PHASES]
        statements: list[Statement] = []
        for phase, ids in first:
            if ids:
                statements.append(execution_set_phases.bind(self._worker_id, ids, phase))
        if results:
            reports = [report for report, _ in results.values()]
            statements.append(execution_finish.bind(self._worker_id, reports))
        for phase, ids in rest:
            if ids:
                statements.append(execution_set_phases.bind(self._worker_id, ids, phase))
        if not statements:
            return True
        claim = self._claims.size(len(results)) if self._claims and results else 0
        if claim > 0:  # last: it sees the slots the results above freed
            statements.append(task_claim.bind(self._worker_id, claim))
        try:
            self.calls += 1
            answers = await self._link.run_together(statements)
        except errors.ScitqError as exc:  # DatabaseUnavailable included: queue it all again
            for phase in PHASES:
                self._phases[phase] = phases[phase] + self._phases[phase]
            self._results = {**results, **self._results}
            if isinstance(exc, DatabaseUnavailable):
                raise
            return False
        if claim > 0 and self._claims is not None:
            self.claimed += len(answers[-1])
            self._claims.take(answers[-1])  # before the results: their slots are refilled
        for _, done in results.values():
            _settle(done, True)
        return True

    # -- phases ---------------------------------------------------------------------

    async def _send_phases(self, only: set[int] | None = None) -> None:
        """Send the pending phases (only of the executions in ``only``, if given)."""
        for phase in PHASES:
            pending = self._phases[phase]
            if only is None:
                batch, self._phases[phase] = pending, []
            else:
                batch = [i for i in pending if i in only]
                self._phases[phase] = [i for i in pending if i not in only]
            try:
                await self._send_phase(phase, batch)
            except DatabaseUnavailable:
                self._phases[phase] = batch + self._phases[phase]
                raise

    async def _send_phase(self, phase: str, execution_ids: list[int]) -> None:
        while execution_ids:
            try:
                self.calls += 1
                await self._link.call(
                    execution_set_phases.run_async, self._worker_id, execution_ids, phase
                )
                return
            except errors.ExecutionNotLive as exc:
                dead = set(exc.execution_ids)
                if not dead & set(execution_ids):
                    raise  # names nothing we sent: not something a retry fixes
                self._on_not_live(sorted(dead))
                execution_ids = [i for i in execution_ids if i not in dead]
            except DatabaseUnavailable:
                raise
            except errors.ScitqError as exc:
                # a phase is a report: the task itself goes on without it
                logger.error(
                    "phase %s refused for executions %s: %s", phase, execution_ids, exc,
                    extra={"action": "phase_refused", "phase": phase},
                )  # fmt: skip
                return

    # -- results --------------------------------------------------------------------

    async def _send_results(self) -> None:
        batch, self._results = self._results, {}
        try:
            await self._send_result_batch(batch)
        except DatabaseUnavailable:
            self._results = {**batch, **self._results}
            raise

    async def _send_result_batch(self, batch: Pending) -> None:
        while batch:
            try:
                self.calls += 1
                reports = [report for report, _ in batch.values()]
                await self._link.call(execution_finish.run_async, self._worker_id, reports)
            except errors.ExecutionNotLive as exc:
                dead = set(exc.execution_ids) & set(batch)
                if not dead:
                    await self._send_one_by_one(batch)
                    return
                for execution_id in sorted(dead):
                    logger.warning(
                        "execution %d was no longer ours at finish: result dropped", execution_id,
                        extra={"action": "finish_refused", "execution_id": execution_id},
                    )  # fmt: skip
                    _settle(batch.pop(execution_id)[1], False)
            except DatabaseUnavailable:
                raise
            except errors.ScitqError:
                await self._send_one_by_one(batch)
                return
            else:
                for _, done in batch.values():
                    _settle(done, True)
                return

    async def _send_one_by_one(self, batch: Pending) -> None:
        """Isolate the result the database refuses, so the others are stored."""
        for execution_id in list(batch):
            report, done = batch[execution_id]
            try:
                self.calls += 1
                await self._link.call(execution_finish.run_async, self._worker_id, [report])
            except DatabaseUnavailable:
                raise
            except errors.ScitqError as exc:
                logger.error(
                    "result of execution %d refused: %s", execution_id, exc,
                    extra={"action": "finish_refused", "execution_id": execution_id},
                )  # fmt: skip
                _settle(done, False)
            else:
                _settle(done, True)
            del batch[execution_id]


def _settle(done: asyncio.Future[bool], stored: bool) -> None:
    if not done.done():
        done.set_result(stored)
