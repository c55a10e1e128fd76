"""The local provider for real: agent processes started, listed, stopped; orphans found."""

from __future__ import annotations

from pathlib import Path

import pytest

from scitq.config import LocalProviderSettings, SchedulerSettings
from scitq.db.recruitment import instance_request
from scitq.scheduler.operations import OperationRunner, agent_conninfo
from scitq.scheduler.providers.base import InstanceSpec, ProviderError
from scitq.scheduler.providers.local import LocalProvider
from tests.fixtures.agents import wait_for


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def spec(db: str, name: str, **changes) -> InstanceSpec:
    values = {"name": name, "batch": "b", "concurrency": 1, "prefetch": 0, "flavor": None,
              "image": None, "region": None, "database_url": agent_conninfo(db)}  # fmt: skip
    values.update(changes)
    return InstanceSpec(**values)


def nothing(message, progress=None, provider_ref=None) -> None:
    pass


def test_bad_settings_are_config_and_quota_errors(db, tmp_path):
    provider = LocalProvider(LocalProviderSettings(state_dir=tmp_path, max_agents=0))
    with pytest.raises(ProviderError, match="unknown flavor 'big' for provider local") as caught:
        provider.create(spec(db, "x", flavor="big"), nothing)
    assert caught.value.error_class == "config"
    with pytest.raises(ProviderError, match="takes no image"):
        provider.check(None, "debian", None)
    with pytest.raises(ProviderError, match="runs at most 0 agents") as caught:
        provider.create(spec(db, "x"), nothing)
    assert caught.value.error_class == "quota"
    assert list(tmp_path.glob("*.pid")) == []


def test_agent_started_registers_and_is_stopped(db, conn, tmp_path):
    provider = LocalProvider(LocalProviderSettings(state_dir=tmp_path, stop_grace_seconds=10))
    lines: list[str] = []
    created = provider.create(
        spec(db, "local-a"), lambda m, progress=None, provider_ref=None: lines.append(m)
    )
    pid = int(created.provider_ref)
    try:
        wait_for(lambda: conn.execute(
            "SELECT status FROM scitq.worker WHERE name = 'local-a'").fetchone() == ("online",),
            timeout=60)  # fmt: skip
        assert provider.status(created.provider_ref) == "active"
        assert [i.name for i in provider.list()] == ["local-a"]
        # the database URL is in its environment, not on its command line
        assert "password" not in Path(f"/proc/{pid}/cmdline").read_text()
    finally:
        provider.delete(
            created.provider_ref, lambda m, progress=None, provider_ref=None: lines.append(m)
        )
    assert not alive(pid)
    assert provider.status(created.provider_ref) == "deleted"
    assert provider.list() == []
    assert "SIGTERM sent to agent process group" in lines[-2] or "stopped" in lines[-1]
    # a stopped agent hands back and says so
    assert conn.execute("SELECT status FROM scitq.worker WHERE name = 'local-a'").fetchone() == (
        "stopped",
    )


def test_orphans_are_destroyed_when_ours_and_reported_otherwise(db, conn, tmp_path):
    settings = LocalProviderSettings(state_dir=tmp_path, stop_grace_seconds=10)
    provider = LocalProvider(settings)
    (ours,) = instance_request(conn, "local", "b", 1)
    conn.execute("UPDATE scitq.instance SET status = 'error' WHERE id = %s", (ours["instance_id"],))
    leftover = provider.create(spec(db, ours["name"]), nothing)
    stranger = provider.create(spec(db, "someone-else"), nothing)
    runner = OperationRunner(SchedulerSettings(), {"local": provider}, db)
    try:
        orphans = runner.reconcile_now("test:1")
        assert sorted(o["decision"] for o in orphans) == ["orphan", "orphan_deleted"]
        assert not alive(int(leftover.provider_ref))
        assert alive(int(stranger.provider_ref))
        query = "SELECT reason FROM scitq.scheduler_log WHERE decision LIKE 'orphan%' ORDER BY id"
        reasons = [r[0] for r in conn.execute(query)]
        assert any("although its instance is error: destroyed" in r for r in reasons)
        assert any("someone-else" in r and "left alone" in r for r in reasons)
        runner.reconcile_now("test:1")  # reported once
        assert (
            conn.execute(
                "SELECT count(*) FROM scitq.scheduler_log WHERE decision = 'orphan'"
            ).fetchone()[0]
            == 1
        )
    finally:
        runner.shutdown()
        provider.delete(stranger.provider_ref, nothing)
    assert not alive(int(stranger.provider_ref))
