"""The disk policy on a real small file system: a 20 MB tmpfs holding the agent's work
dir and the resource cache, filled by real agents running real tasks.

Mounting needs root (CAP_SYS_ADMIN): elsewhere the tests are skipped, or fail under
``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scitq.agent.diskpolicy import DiskPolicy
from scitq.config import AgentSettings, TransferSettings
from scitq.db.task import task_explain, task_submit
from scitq.transfer.cache import ResourceCache
from tests.fixtures.agents import wait_for, worker_id

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

MB = 2**20


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 20 MB tmpfs, unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m,mode=0755", "tmpfs", str(mount)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _on(disk: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """Agent arguments and environment putting its work dir and cache on ``disk``."""
    # polling every second at most: the claim loop notices freed space sooner
    arguments = ["--work-dir", str(disk / "work"), "--poll-max", "1", *args]
    return arguments, {"SCITQ_DATA_DIR": str(disk / "data")}


def _kept(disk: Path) -> list[str]:
    work = disk / "work"
    return sorted(p.name for p in work.iterdir() if p.name.startswith("execution-"))


def test_failed_work_dirs_give_way_when_the_disk_runs_low(
    conn: psycopg.Connection[Any], start_agent: Any, small_disk: Path
) -> None:
    # each task leaves 5 MB in its work dir and fails: kept for debugging, while space allows
    fill = "dd if=/dev/zero of=$TEMP/blob bs=1M count=5 2>/dev/null || exit 7; exit 1"
    tasks = task_submit(conn, "fill", [{"command": fill, "shell": True, "retries": 0}] * 5)
    args, env = _on(small_disk, "-b", "fill", "--drain", "--min-free-disk", "6M")
    agent = start_agent(*args, env=env)
    assert agent.wait(150) == 0, agent.log()
    codes = conn.execute(
        "SELECT return_code, failure_class FROM scitq.execution ORDER BY id"
    ).fetchall()
    # every command could write its 5 MB: the policy made room each time, before claiming
    assert codes == [(1, "exit")] * 5
    kept = _kept(small_disk)
    assert 1 <= len(kept) <= 2, kept  # 20 MB less the 6 MB floor holds two at most
    last = conn.execute("SELECT max(id) FROM scitq.execution").fetchone()[0]
    assert f"execution-{last}" in kept  # the newest stays; the oldest went first
    first = conn.execute("SELECT min(id) FROM scitq.execution").fetchone()[0]
    assert f"execution-{first}" not in kept
    assert "removed the failed work dir" in agent.log()
    assert len(tasks) == 5


def test_below_the_floor_the_agent_claims_nothing_and_explain_says_why(
    conn: psycopg.Connection[Any], start_agent: Any, small_disk: Path
) -> None:
    (small_disk / "work").mkdir()
    foreign = small_disk / "foreign.bin"  # not scitq's: nothing the policy may remove
    subprocess.run(["dd", "if=/dev/zero", f"of={foreign}", "bs=1M", "count=16"],
                   check=True, capture_output=True)  # fmt: skip
    (task,) = task_submit(conn, "low", [{"command": "echo done", "shell": True}])
    args, env = _on(small_disk, "-b", "low", "--min-free-disk", "6M", "--metrics-interval", "1")
    agent = start_agent(*args, env=env, name="lowdisk")
    wait_for(
        lambda: (
            conn.execute(
                "SELECT is_low_disk FROM scitq.worker_metrics WHERE worker_name = 'lowdisk' "
                "ORDER BY at DESC LIMIT 1"
            ).fetchone()
            == (True,)
        ),
        timeout=60,
    )
    found = task_explain(conn, task["id"])
    assert found is not None and found.status == "pending"
    assert found.code == "workers_busy"
    assert "lowdisk claims nothing: low disk (" in found.message
    assert "below its floor of 6.3 MB" in found.message
    assert conn.execute("SELECT count(*) FROM scitq.execution").fetchone() == (0,)
    assert "claiming nothing:" in agent.log()
    foreign.unlink()  # room again: the task runs
    wait_for(
        lambda: conn.execute("SELECT status FROM scitq.task WHERE id = %s", (task["id"],))
        .fetchone() == ("succeeded",),
        timeout=60,
    )  # fmt: skip
    assert worker_id(conn, "lowdisk") is not None


def test_the_resource_cache_evicts_the_least_recently_used_past_its_cap(
    conn: psycopg.Connection[Any], start_agent: Any, small_disk: Path, tmp_path: Path
) -> None:
    sources = []
    for name in ("r1", "r2", "r3"):
        path = tmp_path / f"{name}.bin"
        path.write_bytes(os.urandom(4 * MB))
        sources.append(f"file://{path}")
    command = "cat $RESOURCE/*.bin > /dev/null"
    tasks = task_submit(conn, "cache", [
        {"command": command, "shell": True, "resources": [uri], "retries": 0} for uri in sources
    ])  # fmt: skip
    args, env = _on(small_disk, "-b", "cache", "--cache-max", "6M", "--min-free-disk", "0")
    agent = start_agent(*args, env=env)
    cache_dir = small_disk / "data" / "resources"

    def cached() -> list[str]:
        if not cache_dir.is_dir():
            return []
        cache = ResourceCache(TransferSettings(cache_dir=cache_dir))
        return sorted(name.rsplit("/", 1)[-1] for name in cache.entries())

    def settled() -> bool:
        statuses = conn.execute(
            "SELECT status FROM scitq.task WHERE batch_id = (SELECT batch_id FROM scitq.task "
            "WHERE id = %s) ORDER BY id", (tasks[0]["id"],)
        ).fetchall()  # fmt: skip
        return all(row == ("succeeded",) for row in statuses) and cached() == ["r3.bin"]

    wait_for(settled, timeout=90)  # the first two were evicted, in the order of their use
    # r1 again: downloaded anew, and r3, now the least recently used, makes room
    (again,) = task_submit(conn, "cache", [{"command": command, "shell": True,
                                            "resources": [sources[0]], "retries": 0}])  # fmt: skip
    wait_for(lambda: cached() == ["r1.bin"], timeout=60)
    bytes_in = conn.execute(
        "SELECT bytes_in FROM scitq.execution WHERE task_id = %s", (again["id"],)
    ).fetchone()[0]
    assert bytes_in == 4 * MB
    agent.stop()
    assert shutil.disk_usage(small_disk).free > 6 * MB


def test_a_fresh_reading_sees_what_the_cached_one_does_not(small_disk: Path) -> None:
    # a claim riding on a report reads the free space fresh: the commands that just ended
    # may have filled the disk within the second a cached reading is reused
    work = small_disk / "work"
    work.mkdir()
    settings = AgentSettings(work_dir=work, min_free_disk_bytes=10 * MB)
    policy = DiskPolicy(settings, clock=lambda: 0.0)  # the cached reading never ages
    assert policy.claim_refusal() is None
    (work / "execution-1").mkdir()
    (work / "execution-1" / "blob").write_bytes(b"\0" * (12 * MB))
    assert policy.claim_refusal() is None  # the reading from before the write
    refusal = policy.claim_refusal(fresh=True)
    assert refusal is not None and "below the floor of 10.5 MB" in refusal
    # a failed execution's dir stays (and counts) from before its report on
    assert policy.keeps(None, dead=False) and not policy.keeps(None, dead=True)
    policy.keep(work / "execution-1")
    assert policy.kept() == [work / "execution-1"]
