"""The agent: serves a worker row, claims tasks and runs them.

One asyncio loop. `Agent.run` registers (or resumes) the worker, then runs side tasks
next to the claim loop: the heartbeat (renews leases, brings configuration changes and
signals, names the executions that are no longer ours), the output flusher (all running
executions' output in one round trip, about every second) and, when the server allows
it, a LISTEN connection that wakes the claim loop early. Polling alone is correct.

Slots: an execution is held from its claim to its finish; at most ``concurrency +
prefetch`` are held, more for short tasks (claims ask for the free slots and, riding on a
report of results, for those it frees and read-ahead: `scitq.agent.reports`; the database
enforces the bound), at most ``concurrency`` run at once. Stopping (SIGTERM/SIGINT, or a
drain set in the database) stops claiming, lets running commands finish within the grace
period, kills the rest and hands back what did not finish (`worker_stop_v1`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from scitq import errors
from scitq.agent.diskpolicy import DiskPolicy
from scitq.agent.download import download_phase, needs_download_phase
from scitq.agent.held import (
    Held,
    command_spec,
    describe_end,
    finish_report,
    not_started,
    with_upload_failure,
)
from scitq.agent.identity import refuse_live_elsewhere
from scitq.agent.images import ImagePuller
from scitq.agent.link import DatabaseLink, DatabaseUnavailable
from scitq.agent.metrics import HostSampler
from scitq.agent.output import OutputBatcher
from scitq.agent.polling import Backoff, listen_for_submissions, wait_any
from scitq.agent.process import CommandResult, RunningCommand
from scitq.agent.reports import READ_AHEAD, ClaimHook, Reporter
from scitq.agent.stager import Stager
from scitq.agent.task_cache import TaskCache
from scitq.agent.workdirs import WorkFolders
from scitq.config import AgentSettings, TransferSettings
from scitq.db.task import task_claim
from scitq.db.worker import worker_heartbeat, worker_register, worker_stop
from scitq.states import ExecutionStatus

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
#: Called once registered, with the worker row (the CLI prints its start line).
Announce = Callable[[dict[str, Any]], None]


class Agent:
    """Serve one worker until stopped."""

    def __init__(
        self,
        settings: AgentSettings,
        conninfo: str,
        transfer: TransferSettings | None = None,
        announce: Announce | None = None,
    ) -> None:
        self.settings = settings
        self._announce = announce
        self.stager = Stager(transfer or TransferSettings())
        name = f"scitq-agent {settings.name}"
        self.link = DatabaseLink(conninfo, application_name=name)
        self.task_cache = TaskCache(self.link, self.stager.settings)
        # reports have their own connection: their pipeline must not interleave with other
        # calls, and claims need not wait behind them (opened on first use)
        self._report_link = DatabaseLink(conninfo, application_name=f"{name} reports")
        self._conninfo = conninfo
        self.worker_id: int = 0
        self.concurrency = settings.concurrency or 1
        self.prefetch = settings.prefetch or 0
        self.is_paused = False
        self.is_draining = False
        self.held: dict[int, Held] = {}
        self._ended: set[int] = set()  # held, their command over
        self.running = 0
        self.stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._slot_changed = asyncio.Condition()
        self._acked_signals: list[int] = []
        self._config_version = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.batcher: OutputBatcher | None = None
        self.reporter: Reporter | None = None
        self.work_folders = WorkFolders(settings.work_dir)
        self.disk = DiskPolicy(settings, self.stager.cache_if_any)
        self.sampler = HostSampler(self.disk, settings.metrics_seconds)
        self.images = ImagePuller.from_settings(settings)

    # -- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        """Register, serve until stopped, hand back what is left."""
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        self.work_folders.remove_leftovers()
        worker = await self._register()
        if worker is None:  # stopped before the database answered
            await self.link.close()
            return
        self.worker_id = int(worker["id"])
        self._apply_config(worker)
        self.batcher = OutputBatcher(
            worker_id=self.worker_id,
            spool_dir=self.settings.work_dir / f"spool-{self.worker_id}",
            cap_bytes=self.settings.output_cap_bytes,
            on_not_live=self._on_not_live,
        )
        hook = ClaimHook(size=self._free_slots, take=self._start)  # claims ride on reports
        self.reporter = Reporter(self._report_link, self.worker_id, self._on_not_live, hook)
        logger.debug(  # the CLI prints the start line (announce)
            "worker %s (%d) serving", self.settings.name, self.worker_id,
            extra={"action": "agent_start", "worker_id": self.worker_id},
        )  # fmt: skip
        if self._announce is not None:
            self._announce(worker)
        side = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._flush_loop(), name="flush"),
            asyncio.create_task(self.reporter.run(), name="reports"),
        ]
        if self.settings.listen:
            listen = listen_for_submissions(self._conninfo, self._wake)
            side.append(asyncio.create_task(listen, name="listen"))
        try:
            await self._claim_loop()
            await self._finish_up()
        finally:
            for task in side:
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)
            with contextlib.suppress(errors.ScitqError):
                await self.link.call(worker_stop.run_async, self.worker_id)
            await self.link.close()
            await self._report_link.close()
            logger.info("worker stopped", extra={"action": "agent_stop"})

    async def _register(self) -> dict[str, Any] | None:
        """Register (or resume) the worker row, waiting for the database; None if stopped."""
        backoff = Backoff(0.5, 30.0)
        hostname = os.uname().nodename
        while not self.stopping.is_set():
            try:
                await refuse_live_elsewhere(self.link, self.settings.name, hostname)
                return await self.link.call(
                    worker_register.run_async, self.settings.name, hostname=hostname,
                    batches=self.settings.batches, concurrency=self.settings.concurrency,
                    prefetch=self.settings.prefetch, cpu_count=os.cpu_count(),
                    lease_seconds=self.settings.lease_seconds,
                )  # fmt: skip
            except DatabaseUnavailable:
                await wait_any(self.stopping, timeout=backoff.next())
        return None

    def stop(self) -> None:
        """Stop claiming; running tasks get the shutdown grace period."""
        self.stopping.set()
        self._wake.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop gracefully; a second one kills running tasks at once."""
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if not self.stopping.is_set() and self.held:
                logger.warning(
                    "stopping: no new claims; running tasks may finish within %g s, then are "
                    "handed back; a second Ctrl-C (or SIGTERM) kills them now",
                    self.settings.shutdown_grace_seconds, extra={"action": "stopping"},
                )  # fmt: skip
            if self.stopping.is_set():
                logger.warning("second stop signal: killing tasks", extra={"action": "kill_all"})
                for held in list(self.held.values()):
                    if held.command is not None:
                        held.command.signal("kill")
            self.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)

    async def _finish_up(self) -> None:
        """Wait for running commands within the grace period, then kill them."""
        await self._notify_slots()  # prefetched executions stop waiting: handed back at stop
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            grace = None if self.is_draining else self.settings.shutdown_grace_seconds
            _, late = await asyncio.wait(pending, timeout=grace)
            for held in list(self.held.values()):
                if held.command is not None and not held.dead:
                    held.dead = True
                    await held.command.kill("the agent is shutting down")
            if late:
                await asyncio.wait(late, timeout=self.settings.kill_grace_seconds + 30)

    # -- claiming -------------------------------------------------------------------

    def _free_slots(self, finishing: int = 0) -> int:
        """Slots a claim may fill (+ ``finishing``, and `READ_AHEAD` riding on their report)."""
        closed = self.stopping.is_set() or self.is_paused or self.is_draining
        # below the disk floor? (statvfs: cached in the claim loop, fresh on a report)
        if closed or self.disk.claim_refusal(fresh=finishing > 0):
            return 0
        staged = any(needs_download_phase(h.claim) for h in self.held.values())
        if not finishing or staged:  # read-ahead rides on reports, with nothing to fetch
            return self.concurrency + self.prefetch - len(self.held) + finishing
        ahead = self.concurrency * (1 + READ_AHEAD) + self.prefetch  # ended: take no slot
        return ahead - len(self.held) + len(self._ended)

    async def _claim_loop(self) -> None:
        backoff = Backoff(self.settings.poll_min_seconds, self.settings.poll_max_seconds)
        while not self.stopping.is_set():
            if self.is_draining:
                self.stop()
                break
            free = self._free_slots()
            if free <= 0:
                await wait_any(self._wake, self.stopping, timeout=self.settings.poll_max_seconds)
                self._wake.clear()
                continue
            try:
                claims = await self.link.call(task_claim.run_async, self.worker_id, free)
            except DatabaseUnavailable:
                claims = []
            self._start(claims)
            if claims:
                backoff.reset()
                continue
            if self.settings.exit_when_idle and not self.held:
                logger.info("no work left: exiting", extra={"action": "idle_exit"})
                self.stop()
                break
            await wait_any(self._wake, self.stopping, timeout=backoff.next())
            self._wake.clear()

    def _start(self, claims: list[dict[str, Any]]) -> None:
        assert self.batcher is not None
        for claim in claims:
            execution_id = int(claim["execution_id"])
            work_dir = self.settings.work_dir / f"execution-{execution_id}"
            held = Held(claim, work_dir, self.batcher.open(execution_id))
            self.held[execution_id] = held
            task = asyncio.create_task(self._execute(held), name=f"execution-{execution_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- one execution ----------------------------------------------------------------

    async def _execute(self, held: Held) -> None:
        result: CommandResult | None = None
        try:
            failure = self._prepare_work_dir(held)
            if failure is None and needs_download_phase(held.claim):  # before a run slot
                assert self.reporter is not None
                self.reporter.set_phase(held.execution_id, ExecutionStatus.DOWNLOADING)
                failure = await download_phase(
                    held, self.stager, self.images, self.disk, self.task_cache
                )
            if failure is not None:
                result = failure
            else:
                await self._wait_run_slot(held)
                if held.dead:
                    return
                self.running += 1
                try:
                    result = await self._run_command(held)
                finally:
                    self.running -= 1
                    self._ended.add(held.execution_id)
                    await self._notify_slots()
            if held.dead or result is None:
                return
            if held.claim.get("output") and held.cached_from is None:
                result = await self._upload(held, result)
            held.output.close()
            await self._deliver_output(held)
            await self._finish(held, result)
        except Exception:
            logger.exception("execution %d crashed the agent's handling", held.execution_id)
        finally:
            self.held.pop(held.execution_id, None)
            self._ended.discard(held.execution_id)
            if self.batcher is not None:
                # delivered (or void): forget it, silent executions included
                self.batcher.discard(held.execution_id)
            if self.disk.keeps(result, dead=held.dead):
                self.disk.keep(held.work_dir)
            else:
                self._release_work_dir(held)
            self._wake.set()

    def _prepare_work_dir(self, held: Held) -> CommandResult | None:
        try:
            self.work_folders.create(held.work_dir.name)
        except OSError as exc:
            return not_started(f"cannot create the work dir {held.work_dir}: {exc.strerror}")
        return None

    def _release_work_dir(self, held: Held) -> None:
        if held.staging is not None and not held.staging.done():
            # a download thread still writes there (it timed out): remove it afterwards
            held.staging.add_done_callback(lambda _: self.work_folders.release(held.work_dir))
        else:
            self.work_folders.release(held.work_dir)

    async def _upload(self, held: Held, result: CommandResult) -> CommandResult:
        """Upload ``output/`` whatever the command's result; an upload failure fails it."""
        assert self.reporter is not None
        self.reporter.set_phase(held.execution_id, ExecutionStatus.UPLOADING)
        moved = await self.stager.upload(held.claim, held.work_dir)
        held.bytes_out = moved.bytes
        return result if moved.failure is None else with_upload_failure(result, moved.failure)

    async def _wait_run_slot(self, held: Held) -> None:
        async with self._slot_changed:
            await self._slot_changed.wait_for(
                lambda: (
                    held.dead
                    or self.stopping.is_set()
                    or (not self.is_paused and self.running < self.concurrency)
                )
            )
        if self.stopping.is_set():
            held.dead = True  # not started: handed back at stop

    async def _notify_slots(self) -> None:
        async with self._slot_changed:
            self._slot_changed.notify_all()

    async def _run_command(self, held: Held) -> CommandResult | None:
        assert self.reporter is not None
        # a report sent with the next batch: the task need not wait for the database
        self.reporter.set_phase(held.execution_id, ExecutionStatus.RUNNING)
        spec = command_spec(held, self.settings, self.concurrency)
        held.command = await RunningCommand.start(spec, held.output.write)
        return await held.command.wait()

    async def _deliver_output(self, held: Held) -> None:
        assert self.batcher is not None
        backoff = Backoff(0.5, 30.0)
        while not held.dead:
            try:
                await self.batcher.drain(await self.link.connection(), held.execution_id)
                return
            except errors.DatabaseError:
                await asyncio.sleep(backoff.next())

    async def _finish(self, held: Held, result: CommandResult | None) -> None:
        assert result is not None and self.reporter is not None
        await self.task_cache.record(held, self.worker_id, result)  # use_cache tasks only
        if self.disk.keeps(result, dead=held.dead):  # before the report, whose claims see it
            self.disk.keep(held.work_dir)
        await self.reporter.finish(finish_report(held, result))  # waits while the database is away
        extra = {"action": "task_end", "execution_id": held.execution_id}
        logger.info("%s", describe_end(held.claim, result), extra=extra)

    # -- side tasks ------------------------------------------------------------------

    def _apply_config(self, row: dict[str, Any]) -> None:
        self._config_version = int(row["config_version"])
        self.concurrency = int(row["concurrency"])
        self.prefetch = int(row["prefetch"])
        self.is_paused = bool(row["is_paused"])
        self.is_draining = bool(row["is_draining"])

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.1)
            # the period follows the state: short while executions are held
            idle = self.settings.idle_heartbeat_seconds
            period = self.settings.heartbeat_seconds if self.held else idle
            if loop.time() - last < period:
                continue
            last = loop.time()
            acked, self._acked_signals = self._acked_signals, []
            try:
                beat = await self.link.call(
                    worker_heartbeat.run_async, self.worker_id, list(self.held), acked,
                    metrics=self.sampler.at_heartbeat(),  # when due; a disk sweep when due
                )  # fmt: skip
            except DatabaseUnavailable:
                self._acked_signals = acked + self._acked_signals
                continue
            except errors.ScitqError as exc:
                logger.error("heartbeat refused: %s", exc, extra={"action": "heartbeat_error"})
                continue
            if beat["config_version"] != self._config_version:
                self._apply_config(beat)
                await self._notify_slots()
                self._wake.set()  # more slots, a resume or a drain: act now
            for signal_row in beat["signals"]:
                self._apply_signal(signal_row)
            self._on_not_live(list(beat["dead_execution_ids"]))

    def _apply_signal(self, row: dict[str, Any]) -> None:
        self._acked_signals.append(int(row["id"]))
        held = self.held.get(int(row["execution_id"]))
        if held is None or held.command is None or row["id"] in held.applied_signals:
            return
        held.applied_signals.add(int(row["id"]))
        logger.info(
            "signal %s for execution %d", row["kind"], held.execution_id,
            extra={"action": "signal", "execution_id": held.execution_id, "kind": row["kind"]},
        )  # fmt: skip
        held.command.signal(str(row["kind"]))

    def _on_not_live(self, execution_ids: list[int]) -> None:
        """The database says these executions are no longer ours: stop our copies."""
        for execution_id in execution_ids:
            held = self.held.get(execution_id)
            if held is None or held.dead:
                continue
            held.dead = True
            held.cancel_staging.set()
            logger.warning(
                "execution %d is no longer ours: killing it", execution_id,
                extra={"action": "kill_not_live", "execution_id": execution_id},
            )  # fmt: skip
            if held.command is not None:
                task = asyncio.create_task(held.command.kill("the execution is no longer live"))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if execution_ids:
            asyncio.get_running_loop().create_task(self._notify_slots())

    async def _flush_loop(self) -> None:
        assert self.batcher is not None
        waited = 0.0
        while True:
            await asyncio.sleep(0.1)
            waited += 0.1
            if waited < FLUSH_SECONDS and not self.batcher.needs_flush():
                continue
            waited = 0.0
            if self.batcher.pending_bytes() > 0:
                with contextlib.suppress(errors.DatabaseError):
                    await self.batcher.flush(await self.link.connection())
