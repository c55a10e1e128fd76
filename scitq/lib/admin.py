"""The administration methods of `scitq.lib.Server`: workers, deploys, signals, batches,
recruiters, flavors and v1's server configuration."""

from __future__ import annotations

import signal as signals
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from scitq.client import DEFAULT_BATCH
from scitq.db.batch import batch_delete, batch_pause, batch_resume, batch_signal
from scitq.db.execution import execution_get
from scitq.db.recruitment import (
    instance_list,
    instance_release,
    recruiter_delete,
    recruiter_find,
    recruiter_list,
    recruiter_set,
    recruiter_update,
)
from scitq.db.task import task_signal
from scitq.db.worker import worker_delete, worker_list, worker_update
from scitq.errors import InvalidArgument, NotFound
from scitq.lib.shapes import (
    EXECUTION_STATUS_V1,
    TASK_STATUS_V1,
    V1_WORKER_STATUSES,
    check_v1_status,
    v1_recruiter,
    v1_worker,
)
from scitq.states import HELD_TASK_STATUSES, LIVE_EXECUTION_STATUSES, SignalKind, TaskStatus

if TYPE_CHECKING:
    from scitq.client import Client
    from scitq.config import Settings

#: v1's flavor defaults (``scitq.constants``).
FLAVOR_DEFAULT_EVICTION = 5
FLAVOR_DEFAULT_LIMIT = 10
#: v1's "any region": the provider's own.
AUTO = "auto"
#: The signal numbers v1 sent to executions, as scitq's signals (v1's "stop" sent 3).
SIGNALS: dict[int, SignalKind] = {
    signals.SIGQUIT: SignalKind.TERM,
    signals.SIGTERM: SignalKind.TERM,
    signals.SIGKILL: SignalKind.KILL,
    signals.SIGTSTP: SignalKind.PAUSE,
    signals.SIGSTOP: SignalKind.PAUSE,
    signals.SIGCONT: SignalKind.RESUME,
}
OK = {"result": "Ok"}


def refuse(method: str, why: str) -> NoReturn:
    """Raise the one-line error of a v1 method that has no equivalent here."""
    raise InvalidArgument(f"Server.{method} is part of scitq v1's REST protocol: {why} in scitq v2")


def signal_kind(number: int) -> SignalKind | None:
    """The scitq signal for a v1 signal number (0: none)."""
    if number == 0:
        return None
    if number not in SIGNALS:
        known = ", ".join(str(int(n)) for n in sorted(SIGNALS))
        raise InvalidArgument(f"signal {number} cannot be sent to a task: use 0, {known}")
    return SIGNALS[number]


def _filtered(items: list[dict[str, Any]], filters: Mapping[str, Any], what: str) -> list[Any]:
    """v1's list filters: each names a field that must equal the value."""
    if items and (unknown := sorted(set(filters) - set(items[0]))):
        raise InvalidArgument(f"unknown {what} filter {unknown[0]!r}: use {', '.join(items[0])}")
    return [item for item in items if all(item[k] == v for k, v in filters.items())]


class AdminMethods:
    """Mixed into `scitq.lib.Server`, which sets ``client``, ``settings`` and ``_out``."""

    client: Client
    settings: Settings

    def _out(self, value: Any) -> Any:
        raise NotImplementedError

    # -- workers ------------------------------------------------------------------------

    def _workers(self) -> list[dict[str, Any]]:
        found = instance_list(self.client.connection)
        linked = {i["worker_id"]: i for i in found if i["worker_id"] is not None}
        # an agent registers before the scheduler links its instance: matched by its name
        named = {i["name"]: i for i in found if i["worker_id"] is None}
        rows = worker_list(self.client.connection)
        return [
            v1_worker(row, linked.get(row["worker_id"]) or named.get(row["name"])) for row in rows
        ]

    def _worker(self, id: int) -> dict[str, Any]:
        for worker in self._workers():
            if worker["worker_id"] == id:
                return worker
        raise NotFound(f"worker {id} does not exist")

    def workers(self, **args: Any) -> Any:
        """Workers, filtered by any field (``batch='b'``, ``status='running'``...)."""
        return self._out(_filtered(self._workers(), args, "worker"))

    def worker_get(self, id: int) -> Any:
        return self._out(self._worker(id))

    def worker_update(
        self, id: int, name: str | None = None, hostname: str | None = None,
        concurrency: int | str | None = None, status: str | None = None,
        batch: str | None = None, permanent: bool | None = None, prefetch: int | None = None,
        flavor: str | None = None, task_properties: Any = None, asynchronous: bool = True,
    ) -> Any:  # fmt: skip
        """Change a worker's concurrency, prefetch, batch, status (paused or running) or
        permanence; its name, host and flavor are the agent's and cannot change."""
        for field, value in (("name", name), ("hostname", hostname), ("flavor", flavor),
                             ("task_properties", task_properties)):  # fmt: skip
            if value is not None:
                raise InvalidArgument(
                    f"worker_update: a worker's {field} cannot change in scitq v2"
                )
        paused = None
        if status is not None:
            check_v1_status(status, V1_WORKER_STATUSES[:2], "worker (settable)")
            paused = status == TaskStatus.PAUSED
        self._worker(id)
        worker_update(
            self.client.connection, id,
            concurrency=None if concurrency is None else int(concurrency), prefetch=prefetch,
            batches=None if batch is None else [batch], is_paused=paused,
            is_permanent=permanent,
        )  # fmt: skip
        return self._out(self._worker(id))

    def worker_delete(self, id: int, asynchronous: bool = True) -> Any:
        """Delete a worker: a deployed one is destroyed (its machine too), like v1."""
        worker = self._worker(id)
        instances = [i for i in instance_list(self.client.connection) if i["worker_id"] == id]
        if instances:
            instance_release(self.client.connection, instances[0]["instance_id"], "worker_delete")
        else:
            worker_delete(self.client.connection, id)
        return self._out(worker)

    def worker_executions(self, id: int, status: str | None = None) -> Any:
        """The live executions of a worker (of v1 ``status`` if given)."""
        from scitq.lib.shapes import v1_execution  # the task methods' shape

        worker = self._worker(id)
        found = []
        held = [str(status) for status in HELD_TASK_STATUSES]
        for task in self.client.tasks(worker=worker["name"], status=held):
            for execution in self.client.executions(task.id):
                if (
                    execution.worker_name == worker["name"]
                    and execution.status in LIVE_EXECUTION_STATUSES
                ):
                    found.append(v1_execution(execution, task, {worker["name"]: id}, True))
        if status is not None:
            found = [e for e in found if e["status"] == status]
        return self._out(found)

    def workers_tasks(self) -> Any:
        """How many tasks each worker ran last, per v1 execution status."""
        ids = {w["name"]: w["worker_id"] for w in self._workers()}
        counts: dict[tuple[int, str], int] = {}
        for task in self.client.tasks():
            if task.worker_name in ids and task.last_execution_status is not None:
                key = (ids[task.worker_name], EXECUTION_STATUS_V1[task.last_execution_status])
                counts[key] = counts.get(key, 0) + 1
        rows = [{"worker_id": w, "status": s, "count": n} for (w, s), n in sorted(counts.items())]
        return self._out(rows)

    def worker_deploy(
        self, number: int, batch: str | None, region: str | None, flavor: str | None,
        concurrency: int, provider: str, prefetch: int = 0, asynchronous: bool = True,
    ) -> Any:  # fmt: skip
        """Deploy ``number`` workers for ``batch`` through the provider named so in the
        configuration; one that cannot serve this region or flavor is refused here."""
        self.client.deploy(
            int(number), batch=batch or DEFAULT_BATCH, provider=provider, flavor=flavor,
            region=None if region == AUTO else region, concurrency=int(concurrency),
            prefetch=int(prefetch or 0),
        )  # fmt: skip
        return self._out({"result": "ok"})

    def worker_create(
        self,
        name: str,
        concurrency: int,
        hostname: str | None = None,
        status: str = "",
        batch: str | None = None,
        permanent: bool | None = None,
        prefetch: int = 0,
        flavor: str | None = None,
        asynchronous: bool = True,
    ) -> Any:
        refuse("worker_create", "`scitq agent --name NAME` registers its worker")

    def worker_ping(
        self, id: int, load: Any, memory: Any, stats: Any, asynchronous: bool = False
    ) -> Any:
        refuse("worker_ping", "agents heartbeat by themselves")

    def worker_callback(self, id: int, message: str, asynchronous: bool = False) -> Any:
        refuse("worker_callback", "the scheduler destroys idle deployed workers")

    def worker_signals(self, id: int) -> Any:
        refuse("worker_signals", "agents receive their signals with their heartbeat")

    def worker_create_signal(
        self, id: int, execution_id: int, signal: int, asynchronous: bool = True
    ) -> Any:
        """Send a signal (9 kill, 15 or 3 term, 20 pause, 18 resume) to an execution."""
        kind = signal_kind(int(signal))
        execution = execution_get(self.client.connection, execution_id)
        worker = self._worker(id)
        if execution is None or execution.worker_name != worker["name"]:
            raise NotFound(f"worker {id} has no execution {execution_id}")
        if kind is not None:
            task_signal(self.client.connection, [execution.task_id], kind)
        return self._out({"execution_id": execution_id, "worker_id": id, "signal": int(signal)})

    # -- batches ------------------------------------------------------------------------

    def batches(self) -> Any:
        """Each batch's task counts per v1 status (those above 0) and its workers."""
        serving: dict[str, list[str]] = {}
        for row in worker_list(self.client.connection):
            for batch in row["batches"] or []:
                serving.setdefault(batch, []).append(row["name"])
        found = []
        for progress in self.client.batches():
            item: dict[str, Any] = {"batch": progress.batch}
            for status, count in progress.counts.items():
                word = TASK_STATUS_V1.get(status, status)
                if count:
                    item[word] = item.get(word, 0) + count
            if progress.batch in serving:
                item["workers"] = ",".join(serving[progress.batch])
            found.append(item)
        return self._out(found)

    def batch_stop(self, batch: str, signal: int = 0, asynchronous: bool = True) -> Any:
        """Pause a batch (its tasks are not started any more), signaling its running tasks."""
        kind = signal_kind(int(signal))
        batch_pause(self.client.connection, batch)
        if kind is not None:
            batch_signal(self.client.connection, batch, kind)
        return self._out(dict(OK))

    def batch_go(self, batch: str, signal: int = 0, asynchronous: bool = True) -> Any:
        """Resume a batch (and send 18, SIGCONT, to its paused tasks if asked)."""
        kind = signal_kind(int(signal))
        batch_resume(self.client.connection, batch)
        if kind is not None:
            batch_signal(self.client.connection, batch, kind)
        return self._out(dict(OK))

    def batch_delete(self, batch: str, asynchronous: bool = True) -> Any:
        """Delete a batch: its tasks, executions and recruiters."""
        self.client.batch_id(batch)  # NotFound if there is none
        batch_delete(self.client.connection, batch)
        return self._out(dict(OK))

    # -- recruiters ---------------------------------------------------------------------

    def recruiters(self, **args: Any) -> Any:
        """Recruiters, filtered by any field (``batch='b'``...)."""
        return self._out(self._recruiters(args))

    def _recruiters(self, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        found = [v1_recruiter(row) for row in recruiter_list(self.client.connection)]
        return _filtered(found, args, "recruiter")

    def _recruiter(self, batch: str, rank: int) -> dict[str, Any]:
        row = recruiter_find(self.client.connection, batch=batch, rank=int(rank))
        if row is None:
            raise NotFound(f"batch {batch!r} has no recruiter of rank {rank}")
        return row

    def recruiter_create(
        self, batch: str, rank: int, tasks_per_worker: int, flavor: str, concurrency: int,
        region: str | None = None, provider: str | None = None, prefetch: int | None = None,
        minimum_tasks: int | None = None, maximum_workers: int | None = None,
        asynchronous: bool = True,
    ) -> Any:  # fmt: skip
        """Create the recruiter of (batch, rank), or replace it (v1's arguments)."""
        if provider is None:
            raise InvalidArgument(
                "recruiter_create: give provider=: scitq v2 recruiters deploy workers "
                "(idle ones of the same provider are reused first)"
            )
        if minimum_tasks is not None:
            raise InvalidArgument("recruiter_create: minimum_tasks does not exist in scitq v2")
        region = None if region == AUTO else region
        self.settings.scheduler.providers.check_deploy(provider, flavor, region)
        quota = self.settings.scheduler.providers.quotas().get(provider, 1)
        recruiter_set(
            self.client.connection, batch, provider,
            maximum_workers if maximum_workers is not None else quota, flavor=flavor,
            region=region, concurrency=int(concurrency), prefetch=int(prefetch or 0),
            tasks_per_worker=int(tasks_per_worker), rank=int(rank),
        )  # fmt: skip
        return self._out(v1_recruiter(self._recruiter(batch, rank)))

    def recruiter_update(
        self, batch: str, rank: int, tasks_per_worker: int | None = None,
        flavor: str | None = None, region: str | None = None, provider: str | None = None,
        concurrency: int | None = None, prefetch: int | None = None,
        minimum_tasks: int | None = None, maximum_workers: int | None = None,
        asynchronous: bool = True,
    ) -> Any:  # fmt: skip
        current = self._recruiter(batch, rank)
        if minimum_tasks is not None:
            raise InvalidArgument("recruiter_update: minimum_tasks does not exist in scitq v2")
        region = None if region == AUTO else region
        self.settings.scheduler.providers.check_deploy(
            provider or current["provider"], flavor or current["flavor"],
            region or current["region"],
        )  # fmt: skip
        changes = {"tasks_per_worker": tasks_per_worker, "flavor": flavor, "region": region,
                   "provider": provider, "concurrency": concurrency, "prefetch": prefetch,
                   "max_workers": maximum_workers}  # fmt: skip
        recruiter_update(
            self.client.connection, current["recruiter_id"],
            **{key: value for key, value in changes.items() if value is not None},
        )  # fmt: skip
        return self._out(v1_recruiter(self._recruiter(batch, rank)))

    def recruiter_delete(self, batch: str, rank: int, asynchronous: bool = True) -> Any:
        current = self._recruiter(batch, rank)
        recruiter_delete(self.client.connection, current["recruiter_id"])
        return self._out(v1_recruiter(current))

    def recruiters_match(self, **args: Any) -> Any:
        """Workers that the recruiters (filtered like `recruiters`) could reuse: deployed
        by the same provider, with the same flavor."""
        wanted = {(r["worker_provider"], r["worker_flavor"]) for r in self._recruiters(args)}
        providers = {provider for provider, _ in wanted}
        found = [
            worker
            for worker in self._workers()
            if (worker["provider"], worker["flavor"]) in wanted
            or (worker["provider"] in providers and (worker["provider"], None) in wanted)
        ]
        return self._out(found)

    # -- flavors and configuration ------------------------------------------------------

    def flavors(
        self, min_cpu: int = 0, min_ram: int = 0, min_disk: int = 0,
        max_eviction: int = FLAVOR_DEFAULT_EVICTION, limit: int = FLAVOR_DEFAULT_LIMIT,
        provider: str | None = None, region: str | None = None, protofilters: str | None = None,
    ) -> Any:  # fmt: skip
        """The flavors the configured providers serve (v1 listed its cloud's catalogue).

        scitq v2 knows no flavor's size or price: asking for a minimum of CPU, memory or
        disk, or for protofilters, is refused.
        """
        if min_cpu or min_ram or min_disk or protofilters:
            raise InvalidArgument(
                "flavors: scitq v2 has no flavor catalogue (no cpu, ram, disk or cost): "
                "the flavors are those listed in [scheduler.providers.<name>]"
            )
        providers = self.settings.scheduler.providers
        quotas = providers.quotas()
        live: dict[str, int] = {}
        for instance in instance_list(self.client.connection):
            live[instance["provider"]] = live.get(instance["provider"], 0) + 1
        found = []
        for name in providers.names():
            settings = providers.provider(name)
            if settings is None or provider not in (None, name):
                continue
            regions: list[str | None] = [*settings.served("region")] or [None]
            for where in regions:
                if region not in (None, where):
                    continue
                for flavor in settings.served("flavor"):
                    found.append({
                        "name": flavor, "provider": name, "region": where, "cpu": None,
                        "ram": None, "disk": None, "tags": None, "gpu": None, "gpumem": None,
                        "cost": None, "eviction": 0,
                        "available": max(quotas.get(name, 0) - live.get(name, 0), 0),
                    })  # fmt: skip
        return self._out(found[:limit] if limit else found)

    def flavor_find(
        self, cpu: int = 0, ram: int = 0, disk: int = 0,
        max_eviction: int = FLAVOR_DEFAULT_EVICTION, n: int = 1,
    ) -> Any:  # fmt: skip
        """A flavor with room (a list of ``n`` if ``n`` > 1); RuntimeError if none."""
        flavors = [
            dict(f)
            for f in as_dicts(self.flavors(min_cpu=cpu, min_ram=ram, min_disk=disk, limit=0))
        ]
        answer = []
        for _ in range(n):
            free = [flavor for flavor in flavors if flavor["available"] > 0]
            if not free:
                break
            free[0]["available"] -= 1
            answer.append(self._out(dict(free[0])))
        if not answer:
            raise RuntimeError("Could not find any suitable instance of that type")
        return answer[0] if n == 1 else answer

    def config_rclone(self) -> Any:
        refuse("config_rclone", "there is no rclone: storage is set in [transfer] of each machine")

    def config_remote(self) -> Any:
        refuse("config_remote", "there is no REMOTE_URI setting")


def as_dicts(items: Any) -> list[dict[str, Any]]:
    return [item if isinstance(item, dict) else vars(item) for item in items]
