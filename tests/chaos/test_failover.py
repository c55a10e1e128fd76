"""Failover: the primary dies mid-run and its synchronous standby is promoted.

A primary and a synchronous streaming standby (`tests.fixtures.replication`); two
agents, the scheduler, a `scitq batch wait` and the dashboard (its connection pool, a
logged-in session) are given one multi-host connection string (``host=primary,standby
... target_session_attrs=read-write``). While tasks run and write output, every process
of the primary is killed with SIGKILL and the standby promoted. Nobody is restarted or
reconfigured: every task must end succeeded exactly once with its whole output, every
output row and result the primary had committed must be on the new primary (RPO 0),
the CLI must work again, and the dashboard must serve the same session from the new
primary.

Prints RPO and RTO (``FAILOVER_FIGURES=path`` also writes them as JSON, for
``bench/failover.py``). ``FAILOVER_TASKS`` sets the number of tasks (48);
``FAILOVER_PAUSE`` the seconds between the kill and the promotion (0: at once; a
failover manager such as Patroni takes its TTL, 30 s by default, to decide). Not
``SCITQ_*``: tests/conftest.py clears those.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scitq.db.task import task_submit
from scitq.db.web_user import web_user_set
from scitq.web import db as web_db
from scitq.web.auth import hash_password
from tests.fixtures.agents import AgentProcess, wait_for
from tests.fixtures.replication import ReplicatedPair
from tests.web.conftest import PASSWORD, log_in, make_app

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(240)]

TASKS = int(os.environ.get("FAILOVER_TASKS", "48"))
PAUSE = float(os.environ.get("FAILOVER_PAUSE", "0"))
LINES = 20
BATCH = "failover"
LIVE = ["assigned", "downloading", "running", "uploading"]


def expected_output(task_id: int) -> str:
    return "".join(f"task {task_id} line {i}\n" for i in range(1, LINES + 1))


def _scalar(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _cli(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scitq", "--database-url", url, *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def test_failover(replicated_pair: ReplicatedPair, tmp_path: Path) -> None:
    pair = replicated_pair
    url = pair.multi_host_url()
    script = f'for i in $(seq 1 {LINES}); do echo "task $SCITQ_TASK_ID line $i"; sleep 0.1; done'
    conn = psycopg.connect(url, autocommit=True)
    task_submit(conn, BATCH, [
        {"command": script, "shell": True, "retries": 0, "name": f"t{i}"} for i in range(TASKS)
    ])  # fmt: skip
    web_user_set(conn, "fo-admin", hash_password(PASSWORD), "admin")
    app = make_app(url)
    dashboard = log_in(app.test_client(), "fo-admin")
    page = dashboard.get("/batches/")
    assert page.status_code == 200 and BATCH in page.get_data(as_text=True)
    agent_args = ["-b", BATCH, "-c", "4", "--lease", "15", "--heartbeat", "0.5",
                  "--poll-min", "0.2", "--poll-max", "1", "--drain"]  # fmt: skip
    agents = [AgentProcess(url, tmp_path, f"fo-{i}", agent_args) for i in range(2)]
    scheduler_log = (tmp_path / "scheduler.log").open("wb")
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "scitq", "--database-url", url, "scheduler", "--interval", "1",
         "--lock-retry", "1"],
        stdout=scheduler_log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    waiter_log = (tmp_path / "wait.log").open("wb")  # not a pipe: the bar would fill it
    waiter = subprocess.Popen(
        [sys.executable, "-m", "scitq", "--database-url", url, "batch", "wait", BATCH,
         "--timeout", "200"],
        stdout=waiter_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(
            lambda: _scalar(conn, "SELECT count(*) FROM scitq.task WHERE status = 'succeeded'")
            >= TASKS // 6
            and _scalar(conn, "SELECT count(*) FROM scitq.execution WHERE status = 'running'")
            >= 4,
            timeout=90, interval=0.2,
        )  # fmt: skip
        wait_for(
            lambda: _scalar(
                conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            ),
            timeout=30,
        )
        # what the primary has committed (with synchronous replication: what the standby
        # has flushed too), read just before it dies
        committed_output = set(conn.execute(
            "SELECT execution_id, seq, md5(text) FROM scitq.execution_output"
        ).fetchall())  # fmt: skip
        committed_ends = set(conn.execute(
            "SELECT id, status FROM scitq.execution WHERE finished_at IS NOT NULL"
        ).fetchall())  # fmt: skip
        running_before = _scalar(
            conn, "SELECT count(*) FROM scitq.execution WHERE status = ANY(%s)", LIVE
        )
        conn.close()
        killed_at = time.time()
        pair.primary.kill()
        time.sleep(PAUSE)
        promoting_at = time.time()
        pair.standby.promote()
        promoted_at = time.time()

        # the CLI: a fresh command works as soon as the new primary accepts writes
        cli_attempts = 0
        while True:
            cli_attempts += 1
            cli_started = time.time()
            listing = _cli(url, "task", "list", "--batch", BATCH, "--json")
            if listing.returncode == 0:
                cli_at = time.time()
                break
            assert time.time() - promoted_at < 60, listing.stderr
            time.sleep(0.1)
        # the dashboard: its pool drops the dead connections, the session is replicated
        dashboard_attempts = 0
        while True:
            dashboard_attempts += 1
            page = dashboard.get("/batches/")
            if page.status_code == 200:
                dashboard_at = time.time()
                break
            assert time.time() - promoted_at < 60, page.get_data(as_text=True)[:500]
            time.sleep(0.1)
        assert BATCH in page.get_data(as_text=True)  # logged in still: not the login page
        conn = psycopg.connect(url, autocommit=True)
        assert _scalar(conn, "SELECT pg_is_in_recovery()") is False
        assert _scalar(conn, "SELECT current_setting('port')") == str(pair.standby.port)

        def all_succeeded() -> bool:
            return bool(
                _scalar(conn, "SELECT count(*) FROM scitq.task WHERE status = 'succeeded'") == TASKS
            )

        try:
            wait_for(all_succeeded, timeout=150, interval=0.5)
        except AssertionError:
            logs = "\n".join(f"--- {a.name}\n{a.log()[-3000:]}" for a in agents)
            raise AssertionError(f"not all tasks succeeded after the failover\n{logs}") from None
        for agent in agents:  # --drain: they exit once the batch is done
            assert agent.wait(timeout=60) == 0, agent.log()[-3000:]
        waiter.wait(timeout=60)
        assert waiter.returncode == 0, (tmp_path / "wait.log").read_text()[-3000:]
        lock_holder = wait_for(
            lambda: conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted"
            ).fetchone(),
            timeout=30,
        )
        assert lock_holder[0].startswith("scitq-scheduler")
        scheduler_alive = scheduler.poll() is None
    finally:
        web_db.close(app)
        for agent in agents:
            agent.stop()
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
        waiter_log.close()
        if scheduler.poll() is None:
            scheduler.send_signal(signal.SIGTERM)
            try:
                scheduler.wait(timeout=20)
            except subprocess.TimeoutExpired:
                scheduler.kill()
                scheduler.wait()
        scheduler_log.close()
    assert scheduler_alive, (tmp_path / "scheduler.log").read_text()[-3000:]

    # RPO: nothing the primary had committed is missing on the new primary
    output_now = set(conn.execute(
        "SELECT execution_id, seq, md5(text) FROM scitq.execution_output"
    ).fetchall())  # fmt: skip
    lost_rows = committed_output - output_now
    ends_now = dict(conn.execute(
        "SELECT id, status FROM scitq.execution WHERE finished_at IS NOT NULL"
    ).fetchall())  # fmt: skip
    lost_ends = {(i, s) for i, s in committed_ends if ends_now.get(i) != s}
    assert committed_output and committed_ends
    assert lost_rows == set()
    assert lost_ends == set()

    # every task succeeded exactly once, with its whole output once, in order
    assert conn.execute("SELECT status, count(*) FROM scitq.task GROUP BY status").fetchall() == [
        ("succeeded", TASKS)
    ]
    assert (
        conn.execute(
            "SELECT task_id FROM scitq.execution GROUP BY task_id "
            "HAVING count(*) FILTER (WHERE status = 'succeeded') <> 1"
        ).fetchall()
        == []
    )
    assert _scalar(conn, "SELECT count(*) FROM scitq.execution WHERE status = ANY(%s)", LIVE) == 0
    rows = conn.execute(
        "SELECT e.task_id, array_agg(o.seq ORDER BY o.seq), string_agg(o.text, '' ORDER BY o.seq)"
        " FROM scitq.execution e JOIN scitq.execution_output o ON o.execution_id = e.id"
        " WHERE e.status = 'succeeded' GROUP BY e.task_id"
    ).fetchall()
    assert len(rows) == TASKS
    assert [t for t, seqs, text in rows if text != expected_output(t)] == []
    assert [t for t, seqs, _ in rows if seqs != list(range(len(seqs)))] == []
    # the agents stayed the same processes and workers: they reconnected by themselves
    assert _scalar(conn, "SELECT count(*) FROM scitq.worker") == 2

    # RTO: from the kill to the first claim or finish on the new primary
    first_claim, first_finish = conn.execute(
        "SELECT min(assigned_at) FILTER (WHERE assigned_at > to_timestamp(%s)),"
        " min(finished_at) FILTER (WHERE finished_at > to_timestamp(%s)) FROM scitq.execution",
        (promoted_at, promoted_at),
    ).fetchone() or (None, None)
    executions = dict(
        conn.execute("SELECT status, count(*) FROM scitq.execution GROUP BY status").fetchall()
    )
    conn.close()
    firsts = [t for t in (_epoch(first_claim), _epoch(first_finish)) if t is not None]
    assert firsts, "nothing was claimed or finished after the promotion"
    figures = {
        "tasks": TASKS,
        "live_executions_at_kill": running_before,
        "committed_output_rows_at_kill": len(committed_output),
        "rpo_output_rows_lost": len(lost_rows),
        "rpo_results_lost": len(lost_ends),
        "pause_s": PAUSE,
        "promote_s": round(promoted_at - promoting_at, 3),
        "kill_to_promoted_s": round(promoted_at - killed_at, 3),
        "rto_first_claim_or_finish_s": round(min(firsts) - killed_at, 3),
        "rto_first_claim_s": round(_epoch(first_claim) - killed_at, 3) if first_claim else None,
        "rto_first_finish_s": round(_epoch(first_finish) - killed_at, 3) if first_finish else None,
        "rto_cli_s": round(cli_at - killed_at, 3),
        "after_promotion_first_claim_or_finish_s": round(min(firsts) - promoted_at, 3),
        "after_promotion_cli_s": round(cli_at - promoted_at, 3),
        # the CLI's own run time (Python start-up, mostly), and how many commands were
        # started from the promotion on until one worked (1: the CLI was back at once)
        "cli_run_s": round(cli_at - cli_started, 3),
        "cli_attempts": cli_attempts,
        "promoted_to_dashboard_seconds": round(dashboard_at - promoted_at, 2),
        "dashboard_attempts": dashboard_attempts,
        "executions": executions,
    }
    print(f"\nfailover: {json.dumps(figures)}")
    if target := os.environ.get("FAILOVER_FIGURES"):
        Path(target).write_text(json.dumps(figures))
