"""The scheduler process: stand by until it holds the scheduler lock, then run the duties.

`Scheduler.run` loops until stopped: take the lock (or wait, retrying every
``lock_retry_seconds``), then run an APScheduler `BlockingScheduler` (in-memory jobs, one
thread per duty, every job ``max_instances=1`` and ``coalesce=True``) next to a
leadership check. When the lock connection breaks, the check stops APScheduler and the
process stands by again; SIGTERM/SIGINT lets running duties finish, releases the lock and
returns. A database unreachable at start-up is an error; later outages are waited out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import psycopg
from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
from apscheduler.schedulers.blocking import BlockingScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from scitq.config import SchedulerSettings, TransferSettings
from scitq.db import migrate
from scitq.db.scheduler import scheduler_record
from scitq.errors import DatabaseError, PermissionDenied, ScitqError
from scitq.scheduler import duties, schedule
from scitq.scheduler.duties import Recruitment
from scitq.scheduler.leadership import LeadershipLost, SchedulerLock, open_connection
from scitq.scheduler.operations import OperationRunner
from scitq.scheduler.providers.cloudinit import Bootstrap
from scitq.scheduler.recruit import provider_quotas
from scitq.scheduler.wheel_server import WheelServer, agent_bootstrap

logger = logging.getLogger(__name__)

#: Longest wait between reconnection attempts while the database is unreachable.
MAX_RECONNECT_SECONDS = 30.0
#: Why the scheduler stopped when `Scheduler.stop` is given no reason (a signal's name
#: otherwise), in its log line and its ``released`` decision.
STOP_REQUESTED = "on request"


def _one_line(error: Exception) -> str:
    """An error message on one log line (libpq's messages span several)."""
    return " ".join(str(error).split())


def check_schema(conninfo: str) -> None:
    """Refuse a database without scitq's schema or behind this scitq's migrations."""
    try:
        current = migrate.current_revision(conninfo)
    except PermissionDenied as exc:  # a role that may not read alembic_version
        logger.warning("cannot check the schema revision: %s", exc)
        return
    head = migrate.head_revision()
    if current is None:
        raise DatabaseError("the database has no scitq schema: run `scitq db upgrade` first")
    if current != head:
        raise DatabaseError(
            f"the database is at revision {current} but this scitq needs {head}: "
            "run `scitq db upgrade` (or upgrade scitq if the database is newer)"
        )


class Scheduler:
    """One scheduler process: active while it holds the lock, standing by otherwise."""

    def __init__(
        self,
        settings: SchedulerSettings,
        conninfo: str,
        name: str | None = None,
        transfer: TransferSettings | None = None,
    ) -> None:
        """A scheduler of the database at ``conninfo``; ``transfer``: the storage settings
        forwarded to recruited instances (``forward_credentials`` of their provider)."""
        self.settings = settings
        self._transfer = transfer
        self._bootstrap: tuple[Bootstrap, WheelServer | None] | None = None
        #: Recorded with every decision and shown in pg_stat_activity.
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.application_name = f"scitq-scheduler {self.name}"
        self._conninfo = conninfo
        self._stop = threading.Event()
        self._stop_reason = STOP_REQUESTED
        self._lost = threading.Event()
        self._busy = threading.Condition()
        self._running_duties = 0
        self._connections: dict[str, psycopg.Connection[Any]] = {}
        self._recruitment: Recruitment | None = None

    # -- lifecycle ------------------------------------------------------------------

    def run(self) -> None:
        """Serve until `stop`: take the lock when free, run the duties while holding it."""
        lock = SchedulerLock(self._conninfo, self.application_name)
        lock.connect()  # unreachable at start-up: the caller reports it
        try:
            check_schema(self._conninfo)
            logger.info("scheduler %s started", self.name, extra={"action": "scheduler_start"})
            self._take_turns(lock)
        finally:
            lock.close()
            if self._bootstrap is not None and self._bootstrap[1] is not None:
                self._bootstrap[1].stop()
        logger.info(
            "scheduler %s stopped (%s)", self.name, self._stop_reason,
            extra={"action": "scheduler_stop"},
        )  # fmt: skip

    def _take_turns(self, lock: SchedulerLock) -> None:
        """Stand by until the lock is free, serve while holding it; again until stopped."""
        delay = self.settings.lock_retry_seconds
        standing_by = outage = False
        while not self._stop.is_set():
            try:
                if not lock.connected:
                    lock.connect()
                if outage:
                    outage = False
                    logger.info("database reachable again", extra={"action": "db_reconnected"})
                delay = self.settings.lock_retry_seconds
                if lock.try_acquire():
                    standing_by = False
                    self._serve(lock)
                    continue
                if not standing_by:
                    standing_by = True
                    holder = lock.holder() or {}
                    logger.info(
                        "another scheduler is active (%s, backend %s): standing by",
                        holder.get("application_name") or "unknown", holder.get("pid"),
                        extra={"action": "standby"},
                    )  # fmt: skip
                self._stop.wait(self.settings.lock_retry_seconds)
            except DatabaseError as exc:
                lock.close()
                outage = True
                logger.warning(
                    "database unavailable (%s): retrying in %.0f s", _one_line(exc), delay,
                    extra={"action": "db_unavailable"},
                )  # fmt: skip
                self._stop.wait(delay)
                delay = min(MAX_RECONNECT_SECONDS, delay * 2)

    def stop(self, reason: str = STOP_REQUESTED) -> None:
        """Stop: running duties finish (within the grace), the lock is released."""
        if not self._stop.is_set():
            self._stop_reason = reason
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop gracefully; a second one exits at once."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self._stop.is_set():
                logger.warning("second stop signal (%s): exiting now", name)
                raise SystemExit(1)
            logger.info("%s received: stopping", name, extra={"action": "stop_signal"})
            self.stop(name)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)

    # -- one term as the active scheduler ---------------------------------------------

    def _serve(self, lock: SchedulerLock) -> None:
        """Run the duties until stopped or until the lock is lost."""
        self._lost.clear()
        lock_pid = lock.pid
        logger.info(
            "took the scheduler lock (backend %d): active", lock_pid,
            extra={"action": "lock_acquired", "backend_pid": lock_pid},
        )  # fmt: skip
        self._record_leadership(lock, "acquired", f"scheduler {self.name} took the lock")
        self._recruitment = self._start_recruitment()
        runner = self._build(lock, lock_pid)
        try:
            runner.start()  # returns once _check_leadership has shut it down
            self._wait_for_duties()
        finally:
            self._stop_recruitment()
        self._close_duty_connections()
        if self._lost.is_set():
            logger.warning(
                "lost the scheduler lock: duties stopped, standing by",
                extra={"action": "lock_lost"},
            )
            lock.close()
            return
        self._record_leadership(
            lock, "released", f"scheduler {self.name} stopped ({self._stop_reason})"
        )
        lock.release()

    def _build(self, lock: SchedulerLock, lock_pid: int) -> BlockingScheduler:
        enabled = schedule.scheduled(self.settings)
        runner = BlockingScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=len(enabled) + 1)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )
        start = datetime.now(UTC)
        for duty, period in enabled:
            runner.add_job(
                self._run_duty, IntervalTrigger(seconds=period, timezone=UTC),
                args=(duty, lock_pid), id=duty.name, name=duty.name, next_run_time=start,
            )  # fmt: skip
        runner.add_job(
            self._check_leadership,
            IntervalTrigger(seconds=self.settings.lock_check_seconds, timezone=UTC),
            args=(runner, lock), id="leadership", name="leadership",
        )  # fmt: skip
        return runner

    def _check_leadership(self, runner: BlockingScheduler, lock: SchedulerLock) -> None:
        """Stop APScheduler when asked to stop or when the lock connection broke."""
        if not self._stop.is_set() and not self._lost.is_set() and lock.still_held():
            return
        if not self._stop.is_set():
            self._lost.set()
        with contextlib.suppress(Exception):  # already shutting down
            runner.shutdown(wait=False)

    def _record_leadership(self, lock: SchedulerLock, decision: str, reason: str) -> None:
        conn = open_connection(self._conninfo, self.application_name)
        try:
            decisions = [{
                "subject_kind": "scheduler", "decision": decision, "reason": reason,
                "details": {"scheduler": self.name, "backend_pid": lock.pid},
            }]  # fmt: skip
            scheduler_record(conn, "leadership", decisions, self.name)
        except ScitqError as exc:
            logger.warning("cannot record leadership %s: %s", decision, exc)
        finally:
            conn.close()

    # -- recruitment --------------------------------------------------------------------

    def _start_recruitment(self) -> Recruitment:
        """The providers and the thread pool of cloud operations for this term."""
        from scitq.scheduler.providers import build_providers

        if self._bootstrap is None:  # once per process: the wheel server outlives terms
            try:
                self._bootstrap = agent_bootstrap(self.settings, self._transfer)
            except ScitqError as exc:  # deploys that need the wheel fail and say why
                logger.error("agents' wheel not served: %s", _one_line(exc))
                self._bootstrap = agent_bootstrap(
                    dataclasses.replace(self.settings, wheel_listen=None), self._transfer
                )
        providers = build_providers(self.settings.providers, self._bootstrap[0])
        runner = OperationRunner(self.settings, providers, self._conninfo, self.application_name)
        return Recruitment(runner=runner, quotas=provider_quotas(self.settings))

    def _stop_recruitment(self) -> None:
        """Let running cloud operations finish (they are recorded), start no new one."""
        recruitment, self._recruitment = self._recruitment, None
        if recruitment is not None and recruitment.runner is not None:
            recruitment.runner.shutdown(wait=True)

    # -- duties -----------------------------------------------------------------------

    def _run_duty(self, duty: schedule.Duty, lock_pid: int) -> None:
        if self._stop.is_set() or self._lost.is_set():
            return
        with self._busy:
            self._running_duties += 1
        try:
            context = duties.DutyContext(
                conn=self._duty_connection(duty.name), settings=self.settings,
                scheduler=self.name, lock_pid=lock_pid, stop=self._stop,
                recruitment=self._recruitment,
            )  # fmt: skip
            count = duty.run(context)
            if count:
                logger.info(
                    "%s: %d %s", duty.name, count, duty.counts,
                    extra={"action": "duty", "duty": duty.name, "count": count},
                )  # fmt: skip
        except LeadershipLost:
            logger.warning("%s: the scheduler lock is lost, not acting", duty.name)
            self._lost.set()
        except ScitqError as exc:
            logger.error(
                "%s failed: %s", duty.name, _one_line(exc),
                extra={"action": "duty_failed", "duty": duty.name},
            )  # fmt: skip
        except Exception:
            logger.exception("%s crashed", duty.name, extra={"action": "duty_crashed"})
        finally:
            with self._busy:
                self._running_duties -= 1
                self._busy.notify_all()

    def _duty_connection(self, name: str) -> psycopg.Connection[Any]:
        """The duty's own connection, reopened after it broke."""
        conn = self._connections.get(name)
        if conn is None or conn.closed or conn.broken:
            conn = open_connection(self._conninfo, self.application_name)
            self._connections[name] = conn
        return conn

    def _wait_for_duties(self) -> None:
        with self._busy:
            finished = self._busy.wait_for(
                lambda: self._running_duties == 0, timeout=self.settings.shutdown_grace_seconds
            )
        if not finished:
            logger.warning("duties still running after the grace period: interrupting them")

    def _close_duty_connections(self) -> None:
        for conn in self._connections.values():
            with contextlib.suppress(psycopg.Error):
                conn.close()
        self._connections.clear()
