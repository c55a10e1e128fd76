"""The ``local`` provider: each instance is a ``scitq agent`` process on this machine.

An agent is started detached, in its own session and process group, with the database
URL in its environment (never on its command line, which every user can read). Its pid
and start time go to ``<state_dir>/<name>.pid`` (the start time guards against a reused
pid), its output to ``<name>.log``. Deleting sends SIGTERM to its process group (the agent
hands back its tasks and exits), then SIGKILL after the grace.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scitq.config import LocalProviderSettings
from scitq.config.scheduler import LOCAL_FLAVOR
from scitq.scheduler.providers.base import CreatedInstance, InstanceSpec, ProviderError, Report

logger = logging.getLogger(__name__)


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of /proc/<pid>/stat), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie is as good as gone
        return None
    return fields[19]


class LocalProvider:
    """Agents as local processes (real ones: tests and big single machines use it)."""

    needs_agent_role = False

    def __init__(
        self,
        settings: LocalProviderSettings,
        name: str = "local",
        flavors: tuple[str, ...] = (),
        regions: tuple[str, ...] = (),
    ) -> None:
        """A provider of local agents called ``name``, that also serves the ``flavors``
        and ``regions`` named (scitq v1 scripts name their cloud's)."""
        self.name = name
        self.settings = settings
        self.flavors = (LOCAL_FLAVOR, *flavors)
        self.regions = (LOCAL_FLAVOR, *regions)
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def _pid_file(self, name: str) -> Path:
        return self.settings.state_dir / f"{name}.pid"

    def check(self, flavor: str | None, image: str | None, region: str | None) -> None:
        if flavor is not None and flavor not in self.flavors:
            raise ProviderError(
                f"unknown flavor {flavor!r} for provider {self.name}: "
                f"it only has {', '.join(map(repr, self.flavors))}",
                "config",
            )
        if image is not None:
            raise ProviderError(
                f"provider {self.name} takes no image: agents run on this machine", "config"
            )
        if region is not None and region not in self.regions:
            raise ProviderError(f"unknown region {region!r} for provider {self.name}", "config")

    def create(self, spec: InstanceSpec, report: Report) -> CreatedInstance:
        self.check(spec.flavor, spec.image, spec.region)
        if len(self.list()) >= self.settings.max_agents:
            raise ProviderError(
                f"quota exceeded: provider local runs at most {self.settings.max_agents} agents",
                "quota",
            )
        state_dir = self.settings.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            log = (state_dir / f"{spec.name}.log").open("ab")
        except OSError as exc:
            raise ProviderError(f"cannot write in {state_dir}: {exc}", "config") from exc
        command = [
            sys.executable, "-m", "scitq", "agent", "--name", spec.name, "--batch", spec.batch,
            "--concurrency", str(spec.concurrency), "--prefetch", str(spec.prefetch),
            "--work-dir", str(state_dir / spec.name), *self.settings.agent_options,
        ]  # fmt: skip
        env = {**os.environ, "SCITQ_DATABASE_URL": spec.database_url, "PYTHONUNBUFFERED": "1"}
        with log:
            try:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=env, start_new_session=True, close_fds=True,
                )  # fmt: skip
            except OSError as exc:
                raise ProviderError(f"cannot start the agent: {exc}", "config") from exc
        self._children[process.pid] = process
        started = _start_time(process.pid)
        self._pid_file(spec.name).write_text(
            json.dumps({"pid": process.pid, "start_time": started, "name": spec.name})
        )
        ref = str(process.pid)
        report(f"agent process {ref} started (log: {state_dir / spec.name}.log)", 50, ref)
        return CreatedInstance(ref, spec.name, "building")

    def _alive(self, pid: int, start_time: str | None) -> bool:
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            del self._children[pid]  # reaped
            return False
        current = _start_time(pid)
        return current is not None and (start_time is None or current == start_time)

    def _read(self, pid_file: Path) -> tuple[int, str | None, str] | None:
        try:
            data = json.loads(pid_file.read_text())
            return int(data["pid"]), data.get("start_time"), str(data["name"])
        except (OSError, ValueError, KeyError):
            return None

    def _find(self, provider_ref: str) -> tuple[int, str | None, Path] | None:
        for pid_file in self.settings.state_dir.glob("*.pid"):
            found = self._read(pid_file)
            if found is not None and str(found[0]) == provider_ref:
                return found[0], found[1], pid_file
        return None

    def delete(self, provider_ref: str, report: Report) -> None:
        found = self._find(provider_ref)
        if found is None or not self._alive(found[0], found[1]):
            report(f"agent process {provider_ref} is not running")
            if found is not None:
                found[2].unlink(missing_ok=True)
            return
        pid, start_time, pid_file = found
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        report(f"SIGTERM sent to agent process group {pid}", 30)
        deadline = time.monotonic() + self.settings.stop_grace_seconds
        while self._alive(pid, start_time) and time.monotonic() < deadline:
            time.sleep(0.2)
        if self._alive(pid, start_time):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            report(
                f"agent {pid} still running after {self.settings.stop_grace_seconds:g} s: killed",
                80,
            )
            while self._alive(pid, start_time):
                time.sleep(0.1)
        else:
            report(f"agent process {pid} stopped", 80)
        # the task processes it started live in its process group: none must survive it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)

    def status(self, provider_ref: str) -> str:
        found = self._find(provider_ref)
        if found is None or not self._alive(found[0], found[1]):
            return "deleted"
        return "active"

    def list(self) -> list[CreatedInstance]:
        if not self.settings.state_dir.is_dir():
            return []
        running = []
        for pid_file in sorted(self.settings.state_dir.glob("*.pid")):
            found = self._read(pid_file)
            if found is not None and self._alive(found[0], found[1]):
                running.append(CreatedInstance(str(found[0]), found[2], "active"))
        return running
