"""``scitq scheduler`` processes: one active per database, failover, stop, start-up errors."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys

from click.testing import CliRunner

from scitq.cli import scitq
from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_heartbeat, worker_register
from tests.fixtures.agents import wait_for
from tests.scheduler.conftest import lock_holder


def app(process) -> str:
    return f"scitq-scheduler {process.name}"


def log_rows(conn, duty: str | None = None) -> list[tuple]:
    """(duty, decision, scheduler, subject_id) of every decision, oldest first."""
    return conn.execute(
        "SELECT duty, decision, scheduler, subject_id FROM scitq.scheduler_log "
        "WHERE %(duty)s::text IS NULL OR duty = %(duty)s::text ORDER BY id",
        {"duty": duty},
    ).fetchall()


def leadership(conn) -> list[tuple[str, str]]:
    return [(decision, who) for _, decision, who, _ in log_rows(conn, "leadership")]


def expiring_execution(conn, name: str) -> int:
    """An execution held by a worker with a half-second lease that nobody renews."""
    worker = worker_register(conn, name, batches=[name], lease_seconds=0.5)["id"]
    task_submit(conn, name, [{"command": "true", "retries": 1}])
    (claim,) = task_claim(conn, worker, 1)
    return int(claim["execution_id"])


def lost_by(conn, execution_id: int) -> str | None:
    """The scheduler that recorded the execution as lost, if one did."""
    for _, decision, who, subject in log_rows(conn, "expire_leases"):
        if subject == execution_id and decision == "lost":
            return str(who)
    return None


def test_one_scheduler_acts_and_a_standby_takes_over_when_it_is_killed(conn, start_scheduler):
    first = start_scheduler()
    wait_for(lambda: lock_holder(conn) == app(first))
    second = start_scheduler()
    wait_for(lambda: "another scheduler is active" in second.log())

    execution = expiring_execution(conn, "w1")
    assert wait_for(lambda: lost_by(conn, execution)) == first.name
    status = conn.execute("SELECT status FROM scitq.execution WHERE id = %s", (execution,))
    assert status.fetchone() == ("lost",)
    # everything recorded so far is the active scheduler's
    assert {who for _, _, who, _ in log_rows(conn)} == {first.name}
    assert leadership(conn) == [("acquired", first.name)]
    assert lock_holder(conn) == app(first)

    first.kill()  # SIGKILL: no chance to release anything; its session ends
    wait_for(lambda: lock_holder(conn) == app(second), timeout=10)
    assert "took the scheduler lock" in second.log()
    execution = expiring_execution(conn, "w2")
    assert wait_for(lambda: lost_by(conn, execution)) == second.name
    assert leadership(conn) == [("acquired", first.name), ("acquired", second.name)]


def test_a_broken_lock_connection_stops_the_duties_until_the_lock_is_taken_again(
    conn, start_scheduler
):
    only = start_scheduler()
    wait_for(lambda: lock_holder(conn) == app(only))
    (backend,) = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid IN "
        "(SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)",
        (app(only),),
    ).fetchone()
    conn.execute("SELECT pg_terminate_backend(%s)", (backend,))

    wait_for(lambda: "lost the scheduler lock: duties stopped, standing by" in only.log())
    wait_for(lambda: len(leadership(conn)) == 2)
    assert leadership(conn) == [("acquired", only.name), ("acquired", only.name)]
    new_backend = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
    ).fetchone()
    assert new_backend is not None and new_backend[0] != backend
    # and it acts again
    execution = expiring_execution(conn, "w1")
    assert wait_for(lambda: lost_by(conn, execution)) == only.name


def test_the_active_scheduler_records_a_worker_going_offline_and_back(conn, start_scheduler):
    start_scheduler()
    worker = worker_register(conn, "w1", lease_seconds=1)["id"]

    def liveness() -> list[str]:
        return [decision for _, decision, _, subject in log_rows(conn, "worker_liveness")
                if subject == worker]  # fmt: skip

    def ended_online() -> list[str] | None:
        changes = liveness()
        return changes if changes[-1:] == ["online"] else None

    wait_for(lambda: liveness()[-1:] == ["offline"])
    worker_heartbeat(conn, worker)
    changes = wait_for(ended_online)  # before it goes offline again, a lease later
    assert changes[-2:] == ["offline", "online"]
    assert all(a != b for a, b in itertools.pairwise(changes))  # changes only


def test_sigterm_stops_gracefully_and_releases_the_lock(conn, start_scheduler):
    active = start_scheduler()
    wait_for(lambda: lock_holder(conn) == app(active))
    standby = start_scheduler()
    wait_for(lambda: "another scheduler is active" in standby.log())

    standby.signal(signal.SIGINT)
    assert standby.process.wait(timeout=20) == 0
    active.signal(signal.SIGTERM)
    assert active.process.wait(timeout=20) == 0

    assert lock_holder(conn) is None
    assert leadership(conn) == [("acquired", active.name), ("released", active.name)]
    (reason,) = conn.execute(
        "SELECT reason FROM scitq.scheduler_log WHERE decision = 'released'"
    ).fetchone()
    assert "SIGTERM" in reason
    assert "stopped (SIGINT)" in standby.log()


def run_scheduler(conninfo: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scitq", "--database-url", conninfo, "scheduler"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_unreachable_database_is_a_one_line_error():
    result = run_scheduler("postgresql://scitq@127.0.0.1:1/scitq")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("scitq: error: cannot reach the database")


def test_a_database_without_the_schema_is_a_one_line_error(empty_db):
    result = run_scheduler(empty_db)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "scitq: error: the database has no scitq schema: run `scitq db upgrade` first"
    ]


def test_options_are_checked_before_connecting():
    runner = CliRunner()
    url = ["--database-url", "postgresql://scitq@127.0.0.1:1/scitq"]
    result = runner.invoke(scitq, [*url, "scheduler", "--interval", "0"])
    assert result.exit_code == 2
    assert "--interval" in result.output
    both = ["--keep-decisions", "--decision-retention-days", "3"]
    result = runner.invoke(scitq, [*url, "scheduler", *both])
    assert result.exit_code == 2
    assert "exclude each other" in result.output
