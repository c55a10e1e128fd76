"""What the v1 compatibility tests share: a configuration naming a provider ``ovh`` (local
processes serving v1's region GRA11 and flavors c2-120, c2-30), the settings it gives,
and a scheduler process that deploys from it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scitq.config import Settings, load_settings
from tests.scheduler.conftest import SchedulerProcess

#: Agents that poll and heartbeat often (short tests).
FAST_AGENT = ["--poll-max", "0.5", "--heartbeat", "0.5"]


def write_config(
    tmp_path: Path, *, state_dir: Path | None = None, agent_options: list[str] | None = None
) -> Path:
    """A configuration file whose provider ``ovh`` runs agents on this machine."""
    config = tmp_path / "scitq.toml"
    config.write_text(
        "[scheduler]\n"
        "recruit_seconds = 0.5\n"
        "idle_grace_seconds = 5\n"
        "deploy_backoff_seconds = 600\n"
        "[scheduler.providers.ovh]\n"
        'kind = "local"\n'
        'regions = ["GRA11"]\n'
        'flavors = ["c2-120", "c2-30"]\n'
        f"state_dir = {json.dumps(str(state_dir or tmp_path / 'ovh-agents'))}\n"
        "max_agents = 3\n"
        f"agent_options = {json.dumps(agent_options or FAST_AGENT)}\n"
        "stop_grace_seconds = 10\n"
    )
    return config


def settings_of(config: Path, **env: str) -> Settings:
    return load_settings({"SCITQ_CONFIG": str(config), **env})


@pytest.fixture
def v1_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The configuration file, named by SCITQ_CONFIG for this process and its children."""
    config = write_config(tmp_path)
    monkeypatch.setenv("SCITQ_CONFIG", str(config))
    return config


def stop_local_agents(state_dir: Path) -> None:
    """Stop the agents a local provider started there and that outlive the test (the
    scheduler leaves its agents running when it stops, as it must)."""
    groups = []
    for pid_file in state_dir.glob("*.pid"):
        pid = int(json.loads(pid_file.read_text())["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
            groups.append(pid)
    deadline = time.monotonic() + 20
    for pid in groups:
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def scheduler(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], SchedulerProcess]]:
    """Start a ``scitq scheduler`` (it reads SCITQ_CONFIG) on this test's database; its
    agents keep their name locks in this test's data directory, and are stopped after."""
    monkeypatch.setenv("SCITQ_DATA_DIR", str(tmp_path / "data"))
    started: list[SchedulerProcess] = []

    def start() -> SchedulerProcess:
        args = ["--interval", "0.5", "--lock-retry", "0.5"]
        process = SchedulerProcess(db, tmp_path / f"scheduler-{len(started)}.log", args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    stop_local_agents(tmp_path / "ovh-agents")
