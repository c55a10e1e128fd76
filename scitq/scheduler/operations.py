"""Cloud operations run outside the duties' transactions, in a pool of threads.

The recruit duty only writes rows: an instance ``requested`` with a ``pending`` deploy,
or a ``pending`` destroy. `OperationRunner.dispatch` claims pending operations (status
``running``) as threads free up; each thread calls its provider with its own database
connection, reports progress into the operation's log, and finishes it: ``succeeded``, or
``failed`` with an error class, or back to ``pending`` after a back-off when the failure
is transient and attempts are left.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from scitq.config import SchedulerSettings
from scitq.db.recruitment import (
    cloud_operation_abandon,
    cloud_operation_claim,
    cloud_operation_finish,
    cloud_operation_progress,
    cloud_operation_running,
    instance_refs,
)
from scitq.db.scheduler import scheduler_record
from scitq.db.worker import password_verifier, worker_create_role
from scitq.errors import ScitqError
from scitq.scheduler.leadership import open_connection
from scitq.scheduler.providers.base import InstanceSpec, Provider, ProviderError, Report

logger = logging.getLogger(__name__)

Row = dict[str, Any]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def agent_role_name(worker_name: str) -> str:
    """The login role of a cloud worker: ``scitq_worker_<name>_<6 random hex digits>``.

    Roles are per PostgreSQL cluster, instance names per database: the suffix keeps two
    scitq databases of one server (or a role left by a crash) from colliding.
    """
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in worker_name.lower())
    return f"scitq_worker_{cleaned[:42]}_{secrets.token_hex(3)}"


def agent_conninfo(base: str, role: str | None = None, password: str | None = None) -> str:
    """``base`` logging in as ``role`` with ``password`` (when given)."""
    params: dict[str, Any] = {k: v for k, v in conninfo_to_dict(base).items() if v is not None}
    if role is not None:
        params["user"] = role
        params["password"] = password
    return make_conninfo("", **params)


class OperationRunner:
    """Runs cloud operations in threads, each with its own connection."""

    def __init__(
        self,
        settings: SchedulerSettings,
        providers: dict[str, Provider],
        conninfo: str,
        application_name: str = "scitq-scheduler",
    ) -> None:
        self.settings = settings
        self.providers = providers
        self._conninfo = conninfo
        self._application_name = application_name
        self._pool = ThreadPoolExecutor(
            max_workers=settings.operation_threads, thread_name_prefix="cloud-operation"
        )
        self._lock = threading.Lock()
        self._running: set[int] = set()
        self._reported: set[tuple[str, str]] = set()

    @property
    def running(self) -> set[int]:
        with self._lock:
            return set(self._running)

    def dispatch(self, conn: psycopg.Connection[Any]) -> int:
        """Claim as many pending operations as there are free threads and start them."""
        free = self.settings.operation_threads - len(self.running)
        if free <= 0:
            return 0
        claimed = cloud_operation_claim(conn, free)
        for operation in claimed:
            with self._lock:
                self._running.add(operation["operation_id"])
            self._pool.submit(self._run, operation)
        return len(claimed)

    def abandon_stale(self, conn: psycopg.Connection[Any]) -> list[Row]:
        """Fail operations marked running that no thread of this scheduler runs and that
        have reported nothing for longer than the boot timeout (their scheduler died)."""
        mine = self.running
        stale = [
            row["operation_id"]
            for row in cloud_operation_running(conn)
            if row["operation_id"] not in mine
            and row["idle_seconds"] > self.settings.boot_timeout_seconds
        ]
        if not stale:
            return []
        return cloud_operation_abandon(
            conn, stale, "interrupted: the scheduler running it stopped; check the provider"
        )

    def reconcile(self, scheduler: str | None = None) -> None:
        """Look for orphans in a pool thread (provider listings are slow): see
        `reconcile_now`."""
        self._pool.submit(self._reconcile_logged, scheduler)

    def _reconcile_logged(self, scheduler: str | None) -> None:
        try:
            self.reconcile_now(scheduler)
        except Exception:  # a listing failure must not stop the runner
            logger.exception("orphan reconciliation failed")

    def reconcile_now(self, scheduler: str | None = None) -> list[Row]:
        """Compare what each provider runs with the instance rows; returns the orphans.

        A machine whose instance row is deleted or in error (scitq's own leftover: a
        destroy that failed, a scheduler that died mid-deploy) is destroyed. A machine no
        row of this database names may belong to another scitq database sharing the
        cloud project: it is reported (decision ``orphan``, once), never destroyed.
        """
        conn = open_connection(self._conninfo, self._application_name)
        orphans: list[Row] = []
        try:
            for name, provider in sorted(self.providers.items()):
                try:
                    listed = provider.list()
                except ProviderError as exc:
                    logger.warning("cannot list the instances of %s: %s", name, exc)
                    continue
                known = {row["name"]: row for row in instance_refs(conn, name)}
                for machine in listed:
                    row = known.get(machine.name)
                    if row is not None and row["status"] not in ("deleted", "error"):
                        continue
                    orphans.append(self._orphan(conn, provider, machine.provider_ref,
                                                machine.name, row, scheduler))  # fmt: skip
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.close()
        return orphans

    def _orphan(
        self,
        conn: psycopg.Connection[Any],
        provider: Provider,
        ref: str,
        name: str,
        row: Row | None,
        scheduler: str | None,
    ) -> Row:
        decision: Row = {
            "subject_kind": "instance", "subject_id": None if row is None else row["instance_id"],
            "details": {"provider": provider.name, "provider_ref": ref, "name": name},
        }  # fmt: skip
        if row is None:
            if (provider.name, ref) in self._reported:
                return decision
            self._reported.add((provider.name, ref))
            decision["decision"] = "orphan"
            decision["reason"] = (
                f"{provider.name} runs {name} ({ref}), which no instance of this database "
                "names: left alone (it may belong to another scitq database)"
            )
        else:
            lines: list[str] = []
            try:
                provider.delete(
                    ref, lambda message, progress=None, provider_ref=None: lines.append(message)
                )
                decision["decision"] = "orphan_deleted"
                decision["reason"] = (
                    f"{provider.name} still ran {name} ({ref}) although its instance is "
                    f"{row['status']}: destroyed"
                )
            except ProviderError as exc:
                decision["decision"] = "orphan"
                decision["reason"] = (
                    f"{provider.name} still runs {name} ({ref}): destroy failed: {exc}"
                )
        scheduler_record(conn, "recruit", [decision], scheduler)
        logger.warning(decision["reason"], extra={"action": "orphan", "provider_ref": ref})
        return decision

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no operation runs (tests, shutdown); True if none does."""
        done = threading.Event()
        deadline = threading.Timer(timeout, done.set)
        deadline.start()
        try:
            while not done.is_set():
                if not self.running:
                    return True
                done.wait(0.05)
            return not self.running
        finally:
            deadline.cancel()

    # -- one operation, in a pool thread ----------------------------------------------

    def _run(self, operation: Row) -> None:
        op_id = operation["operation_id"]
        try:
            conn = open_connection(self._conninfo, self._application_name)
        except ScitqError as exc:
            logger.error("cloud operation %d: cannot connect: %s", op_id, _one_line(exc))
            with self._lock:
                self._running.discard(op_id)
            return
        try:
            self._perform(conn, operation)
        finally:
            with self._lock:
                self._running.discard(op_id)
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _perform(self, conn: psycopg.Connection[Any], operation: Row) -> None:
        op_id, kind = operation["operation_id"], operation["kind"]

        def report(
            message: str, progress: int | None = None, provider_ref: str | None = None
        ) -> None:
            cloud_operation_progress(conn, op_id, message, progress, provider_ref)

        extra = {"action": f"cloud_{kind}", "operation_id": op_id, "instance": operation["name"]}
        logger.info(
            "%s of %s (%s) started", kind, operation["name"], operation["provider"], extra=extra
        )
        try:
            provider = self.providers.get(operation["provider"])
            if provider is None:
                raise ProviderError(
                    f"provider {operation['provider']!r} is not configured on this scheduler "
                    f"(configured: {', '.join(sorted(self.providers))})",
                    "config",
                )
            if kind == "deploy":
                self._deploy(conn, provider, operation, report)
            else:
                self._destroy(provider, operation, report)
        except ProviderError as exc:
            self._failed(conn, operation, exc.error_class, _one_line(exc), exc.retryable)
            return
        except Exception as exc:  # a bug or an SDK surprise: recorded, never lost
            logger.exception("cloud operation %d crashed", op_id)
            self._failed(
                conn, operation, "unknown", f"{type(exc).__name__}: {_one_line(exc)}", False
            )
            return
        cloud_operation_finish(conn, op_id)
        logger.info("%s of %s succeeded", kind, operation["name"], extra=extra)

    def _deploy(
        self, conn: psycopg.Connection[Any], provider: Provider, operation: Row, report: Report
    ) -> None:
        provider.check(operation["flavor"], operation["image"], operation["region"])
        base = self.settings.agent_database_url or self._conninfo
        if provider.needs_agent_role:
            role = agent_role_name(operation["name"])
            password = secrets.token_urlsafe(24)
            # the clear password goes to the machine only; the database keeps a verifier
            worker = worker_create_role(
                conn, operation["name"], role, password_verifier(conn, role, password)
            )
            cloud_operation_progress(
                conn, operation["operation_id"], f"database role {role} created for the agent",
                10, worker_id=worker["id"],
            )  # fmt: skip
            database_url = agent_conninfo(base, role, password)
        else:
            database_url = agent_conninfo(base)
        spec = InstanceSpec(
            name=operation["name"], batch=operation["batch"],
            concurrency=operation["concurrency"], prefetch=operation["prefetch"],
            flavor=operation["flavor"], image=operation["image"], region=operation["region"],
            database_url=database_url,
        )  # fmt: skip
        created = provider.create(spec, report)
        report(
            f"instance {created.provider_ref} created; waiting for its agent",
            90,
            created.provider_ref,
        )

    def _destroy(self, provider: Provider, operation: Row, report: Report) -> None:
        ref = operation["provider_ref"]
        if ref is None:
            report("nothing to delete: the instance was never created")
            return
        provider.delete(ref, report)

    def _failed(
        self,
        conn: psycopg.Connection[Any],
        operation: Row,
        error_class: str,
        message: str,
        retryable: bool,
    ) -> None:
        attempts = operation["attempts"]
        retry_after = None
        if retryable and attempts < self.settings.operation_attempts:
            retry_after = self.settings.operation_retry_seconds * 2 ** (attempts - 1)
        logger.warning(
            "%s of %s failed (%s): %s%s", operation["kind"], operation["name"], error_class,
            message, f"; retrying in {retry_after:g} s" if retry_after else "",
            extra={"action": "cloud_operation_failed", "operation_id": operation["operation_id"],
                   "error_class": error_class},
        )  # fmt: skip
        cloud_operation_finish(conn, operation["operation_id"], error_class, message, retry_after)
