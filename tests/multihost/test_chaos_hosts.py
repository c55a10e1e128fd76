"""Chaos across machines: the database on one host, agents on three others (network
namespaces on a bridge, `tests.fixtures.netns`), each agent logging in over TCP and
verified TLS (`scitq db serve`'s relay) with its own role from `scitq db create-role
--agent NAME --batch chaos`, and one scheduler on the database host.

Many short tasks and some longer ones; meanwhile one agent is killed with SIGKILL and
restarted on its host, and another host is cut off (its link down) past the lease, then
restored. The partitioned agent's executions must be lost and fenced (its late finishes
refused, nothing it sends after the loss stored), the other agents must go on during
the partition, the partitioned agent must work again once restored, and every task must
end succeeded exactly once with its whole output. Bounded: about 200 tasks, under a
minute. See docs/reliability.md, "Across machines".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scitq.db.task import task_submit
from scitq.embedded.server import EmbeddedServer
from scitq.embedded.serving import serving
from tests.chaos.test_chaos import (
    LEASE,
    LIVE,
    Fleet,
    _diagnose,
    _scalar,
    _task_processes,
    _told_not_live,
    assert_every_task_succeeded_once,
    chaos_server,  # noqa: F401 (a fixture)
    execution_states,
    lost_when_settled,
)
from tests.fixtures.agents import wait_for
from tests.fixtures.netns import Host, Topology
from tests.fixtures.servers import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.chaos,
    pytest.mark.sql,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        bool(os.environ.get("SCITQ_TEST_DATABASE_URL")),
        reason="serves a private embedded server to the other hosts over TLS",
    ),
]

HOSTS = 3
SHORT, LONG, SECOND_WAVE = 150, 16, 40
SHORT_LINES, LONG_LINES = 4, 30  # a line every 0.1 s: 0.4 s and 3 s tasks


def _script(lines: int) -> str:
    return f'for i in $(seq 1 {lines}); do echo "task $SCITQ_TASK_ID line $i"; sleep 0.1; done'


def _submit(conn: psycopg.Connection[Any], marker: str, prefix: str, count: int,
            lines: int) -> dict[int, int]:  # fmt: skip
    """Submit ``count`` tasks (the default retries 0); task id -> lines it prints."""
    specs = [
        {"command": _script(lines), "shell": True, "retry_delay_seconds": 0,
         "env": {"CHAOS_MARK": marker}, "name": f"{prefix}{i}"}
        for i in range(count)
    ]  # fmt: skip
    return {int(row["id"]): lines for row in task_submit(conn, "chaos", specs)}


def _agent_url(server: EmbeddedServer, name: str, topology: Topology) -> str:
    """`scitq db create-role --agent` as a user runs it on the database host."""
    created = subprocess.run(
        [sys.executable, "-m", "scitq", "db", "create-role", "--agent", name,
         "--batch", "chaos", "--json"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "SCITQ_DATA_DIR": str(server.data_dir)},
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    url = str(json.loads(created.stdout)["database_url"])
    # verified TLS to the database host's address on the bridge: the relay refuses clear
    # text from any address but the loopback, so a working agent is a TLS one
    assert "sslmode=verify-full" in url and f"@{topology.db_address}:" in url, url
    return url


def _connected_from(host: Host, address: str, port: int) -> bool:
    """Whether ``host`` has an established TCP connection to ``address:port``."""
    found = subprocess.run(
        host.command("ss", "-Htn", "state", "established", "dst", f"{address}:{port}"),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return host.address in found.stdout


def _successes(conn: psycopg.Connection[Any], worker_names: list[str]) -> int:
    return int(_scalar(conn, "SELECT count(*) FROM scitq.execution WHERE status = 'succeeded' "
                       "AND worker_name = ANY(%s)", worker_names))  # fmt: skip


def test_chaos_across_hosts_with_a_partition_and_a_kill(
    chaos_server: tuple[EmbeddedServer, str],  # noqa: F811
    netns: Callable[[int], Topology],
    tmp_path: Path,
) -> None:
    server, _ = chaos_server
    topology = netns(HOSTS)
    marker = uuid.uuid4().hex
    port = free_port()
    with serving(server, topology.db_address, port, uuid.uuid4().hex):
        conninfo = server.ensure_running()  # serving restarted it: a new socket
        conn = psycopg.connect(conninfo, autocommit=True)
        lines = _submit(conn, marker, "short", SHORT, SHORT_LINES)
        lines |= _submit(conn, marker, "long", LONG, LONG_LINES)
        names = [f"host{i}-agent" for i in range(HOSTS)]
        placement = {
            name: (_agent_url(server, name, topology), host.command())
            for name, host in zip(names, topology.hosts, strict=True)
        }
        cut_name, killed_name, others = names[0], names[1], names[1:]
        cut_host = topology.hosts[0]
        fleet = Fleet(conninfo, tmp_path, placement)
        try:
            for name in names:
                fleet.start(name)

            def succeeded() -> int:
                return int(_scalar(conn, "SELECT count(*) FROM scitq.task "
                                   "WHERE status = 'succeeded'"))  # fmt: skip

            wait_for(lambda: succeeded() >= 20, timeout=120, interval=0.3)
            # every agent runs from its host, logged in as its own role
            assert all(_connected_from(h, topology.db_address, port) for h in topology.hosts)
            roles = conn.execute(
                "SELECT DISTINCT usename FROM pg_stat_activity "
                "WHERE application_name LIKE 'scitq-agent%' ORDER BY 1"
            ).fetchall()
            assert roles == [(f"scitq_worker_{name}",) for name in names], roles

            # 1. cut one host off while a short task of its agent runs (it ends during the
            # partition: a late finish), and kill another agent with SIGKILL meanwhile
            cut_worker = _scalar(conn, "SELECT id FROM scitq.worker WHERE name = %s", cut_name)
            wait_for(
                lambda: _scalar(
                    conn,
                    "SELECT count(*) FROM scitq.execution e JOIN scitq.task t "
                    "ON t.id = e.task_id WHERE e.worker_id = %s AND e.status = 'running' "
                    "AND t.name LIKE 'short%%'",
                    cut_worker,
                ),
                timeout=60,
                interval=0.05,
            )
            cut_host.partition()
            cut_at = time.monotonic()
            held = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM scitq.execution WHERE worker_id = %s AND status = ANY(%s)",
                    (cut_worker, LIVE),
                )
            ]
            assert held
            others_before = _successes(conn, others)
            fleet.kill_and_restart(killed_name)
            held = lost_when_settled(conn, held)
            at_loss = execution_states(conn, held)
            # the other hosts go on while this one is away
            wait_for(lambda: _successes(conn, others) >= others_before + 10, timeout=60)
            time.sleep(max(0.0, cut_at + LEASE + 3 - time.monotonic()))  # past the lease
            cut_host.restore()
            restored = time.monotonic()
            cut_log = fleet.agents[cut_name].log_path
            wait_for(lambda: _told_not_live(cut_log.read_text(errors="replace"), held),
                     timeout=60, interval=0.5)  # fmt: skip
            told_after = time.monotonic() - restored

            # 2. more work once the host is back: the restored agent takes its share
            restored_at = _scalar(conn, "SELECT now()")
            lines |= _submit(conn, marker, "wave", SECOND_WAVE, SHORT_LINES)
            wait_for(
                lambda: _scalar(conn, "SELECT count(*) FROM scitq.execution WHERE worker_id "
                                "= %s AND status = 'succeeded' AND assigned_at > %s",
                                cut_worker, restored_at),
                timeout=60,
                interval=0.3,
            )  # fmt: skip
            try:
                wait_for(lambda: succeeded() == len(lines), timeout=120, interval=0.5)
            except AssertionError:
                raise AssertionError(_diagnose(conn, fleet)) from None
            scheduler_alive = fleet.scheduler.poll() is None
            alive = sorted(name for name, a in fleet.agents.items() if a.process.poll() is None)
        finally:
            fleet.stop()

    wait_for(lambda: not _task_processes(marker), timeout=30, interval=0.5)
    assert_every_task_succeeded_once(
        conn, len(lines), lambda task: "".join(
            f"task {task} line {i}\n" for i in range(1, lines[task] + 1))
    )  # fmt: skip
    # fenced: the cut agent's lost executions are as they were when lost (its output and
    # finishes after the loss refused), and it was told so, a finish among them
    assert execution_states(conn, held) == at_loss
    assert all(status == "lost" for _, status, _, _ in at_loss)
    log = cut_log.read_text(errors="replace")
    late = [
        execution_id
        for execution_id in held
        if re.search(rf"execution {execution_id} was no longer ours at finish", log)
    ]
    assert late, log[-3000:]
    assert (
        _scalar(
            conn,
            "SELECT count(*) FROM scitq.execution WHERE status = 'lost' "
            "AND (failure_class IS DISTINCT FROM 'lost' OR failure_reason IS NULL)",
        )
        == 0
    )
    # losses spent no retry (retries 0): each was a free requeue
    assert _scalar(conn, "SELECT max(attempt_count - retry_floor) FROM scitq.task") == 1
    assert scheduler_alive
    assert alive == names
    summary = conn.execute(
        "SELECT status, count(*) FROM scitq.execution GROUP BY status ORDER BY status"
    ).fetchall()
    conn.close()
    print(
        f"\nmultihost chaos: {len(lines)} tasks, {HOSTS} agent hosts, 1 SIGKILL, 1 partition of "
        f"{restored - cut_at:.1f} s ({len(held)} executions lost, {len(late)} late finishes "
        f"refused; told {told_after:.1f} s after the restore); executions {dict(summary)}"
    )
