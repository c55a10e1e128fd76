"""The agent end to end: real `scitq agent` processes, real commands, real PostgreSQL."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from scitq.db.task import task_cancel, task_signal, task_submit
from scitq.db.worker import worker_update
from tests.fixtures.agents import wait_for, worker_id


def executions(conn, batch=None):
    return conn.execute(
        "SELECT e.task_id, e.status, e.return_code, e.failure_class, e.worker_name, e.attempt "
        "FROM scitq.execution e JOIN scitq.task t ON t.id = e.task_id "
        "JOIN scitq.batch b ON b.id = t.batch_id WHERE %s::text IS NULL OR b.name = %s "
        "ORDER BY e.id",
        (batch, batch),
    ).fetchall()


def task_status(conn, task_id):
    return conn.execute("SELECT status FROM scitq.task WHERE id = %s", (task_id,)).fetchone()[0]


def log_text(conn, task_id, stream=None):
    rows = conn.execute(
        "SELECT text FROM scitq.task_log WHERE task_id = %s AND (%s::text IS NULL OR "
        "stream::text = %s) ORDER BY attempt, seq",
        (task_id, stream, stream),
    ).fetchall()
    return "".join(text for (text,) in rows)


def all_done(conn, batch):
    row = conn.execute(
        "SELECT remaining, total FROM scitq.batch_progress WHERE batch = %s", (batch,)
    ).fetchone()
    return row is not None and row[0] == 0 and row[1] > 0


def test_runs_tasks_and_records_exit_codes_output_and_usage(conn, start_agent):
    tasks = task_submit(
        conn,
        "basic",
        [
            {"command": "echo out; echo err >&2", "shell": True, "name": "ok"},
            {"command": "sh -c 'exit 3'", "name": "three"},
            {"command": 'echo "$SCITQ_TASK_ID $SCITQ_ATTEMPT $X" "$CPU" "$INPUT"', "shell": True,
             "env": {"X": "from-env"}},
            {"command": "definitely-not-a-command-xyz", "name": "missing"},
        ],
    )  # fmt: skip
    ids = [t["id"] for t in tasks]
    agent = start_agent("-b", "basic", "-c", "2")
    wait_for(lambda: all_done(conn, "basic"))
    assert [task_status(conn, i) for i in ids] == ["succeeded", "failed", "succeeded", "failed"]
    assert log_text(conn, ids[0], "stdout") == "out\n"
    assert log_text(conn, ids[0], "stderr") == "err\n"
    env_line = log_text(conn, ids[2]).split()
    assert env_line[:3] == [str(ids[2]), "1", "from-env"]
    assert int(env_line[3]) >= 1 and env_line[4].endswith("/input")
    rows = conn.execute(
        "SELECT return_code, failure_class, failure_reason, wall_seconds FROM scitq.execution "
        "ORDER BY task_id"
    ).fetchall()
    assert rows[1][:2] == (3, "exit")
    assert rows[3][2] and "definitely-not-a-command-xyz" in rows[3][2]
    assert all(r[3] is not None and r[3] >= 0 for r in rows)
    assert agent.process.poll() is None  # still serving


def test_concurrency_is_never_exceeded_and_is_reached(conn, start_agent):
    task_submit(conn, "conc", [{"command": "sleep 0.6"}] * 9)
    start_agent("-b", "conc", "-c", "3", "-p", "1")
    wait_for(lambda: all_done(conn, "conc"), timeout=60)
    spans = conn.execute(
        "SELECT run_started_at, finished_at FROM scitq.execution WHERE status = 'succeeded'"
    ).fetchall()
    assert len(spans) == 9
    assert _peak(spans) == 3


def test_prefetch_holds_tasks_ahead_of_a_free_slot(conn, start_agent):
    task_submit(conn, "pre", [{"command": "sleep 3"}] * 4)
    agent = start_agent("-b", "pre", "-c", "1", "-p", "2")
    wait_for(lambda: worker_id(conn, agent.name))

    def held():
        return conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'running'), count(*) FROM scitq.execution "
            "WHERE status IN ('assigned', 'downloading', 'running', 'uploading')"
        ).fetchone()

    assert wait_for(lambda: held() == (1, 3), timeout=20)


def _peak(spans):
    """Most of the (start, end) spans open at once."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def _peak_held(conn, batch):
    """Most executions of the batch live at once, from claim to end (database time)."""
    spans = conn.execute(
        "SELECT e.assigned_at, e.finished_at FROM scitq.execution e JOIN scitq.task t "
        "ON t.id = e.task_id JOIN scitq.batch b ON b.id = t.batch_id WHERE b.name = %s",
        (batch,),
    ).fetchall()
    return _peak(spans)


def test_short_tasks_are_read_ahead_and_long_ones_are_not(conn, start_agent):
    task_submit(conn, "quick", [{"command": "true"}] * 80)
    start_agent("-b", "quick", "-b", "long", "-c", "2")
    wait_for(lambda: all_done(conn, "quick"), timeout=60)
    # claims riding on reports hold more than the 2 slots once the tasks are known to be
    # short, and never more than the database allows (8 x concurrency)
    assert 2 < _peak_held(conn, "quick") <= 16
    task_submit(conn, "long", [{"command": "sleep 0.7"}] * 6)
    wait_for(lambda: all_done(conn, "long"), timeout=60)
    # tasks of 0.7 s, on the same agent: the 2 slots only (no prefetch)
    assert _peak_held(conn, "long") == 2


def test_concurrency_changed_in_the_database_applies_live(conn, start_agent):
    task_submit(conn, "live", [{"command": "sleep 2"}] * 6)
    agent = start_agent("-b", "live", "-c", "1")
    wid = wait_for(lambda: worker_id(conn, agent.name))
    wait_for(lambda: conn.execute("SELECT count(*) FROM scitq.execution").fetchone()[0] == 1)
    worker_update(conn, wid, concurrency=3)

    def running():
        return conn.execute(
            "SELECT count(*) FROM scitq.execution WHERE status = 'running'"
        ).fetchone()[0]

    assert wait_for(lambda: running() == 3, timeout=15)


def test_timeout_terms_then_kills(conn, start_agent):
    (task,) = task_submit(
        conn, "slow", [{"command": "trap '' TERM; sleep 30", "shell": True,
                        "run_timeout_seconds": 1}]
    )  # fmt: skip
    start_agent("-b", "slow", "--shutdown-grace", "1")
    started = time.monotonic()
    wait_for(lambda: task_status(conn, task["id"]) == "failed", timeout=40)
    assert time.monotonic() - started < 25
    assert conn.execute("SELECT status, failure_class FROM scitq.execution").fetchone() == (
        "timeout",
        "timeout",
    )


def _pid_of(path):
    return wait_for(lambda: path.exists() and path.read_text().strip() and int(path.read_text()))


def test_signals_pause_resume_and_kill_reach_the_process(conn, start_agent, tmp_path):
    pid_file = tmp_path / "pid"
    (task,) = task_submit(
        conn, "sig", [{"command": f"echo $$ > {pid_file}; exec sleep 60", "shell": True}]
    )
    start_agent("-b", "sig")
    process = psutil.Process(_pid_of(pid_file))
    task_signal(conn, [task["id"]], "pause")
    assert wait_for(lambda: process.status() == psutil.STATUS_STOPPED, timeout=5)
    task_signal(conn, [task["id"]], "resume")
    assert wait_for(lambda: process.status() != psutil.STATUS_STOPPED, timeout=5)
    sent = time.monotonic()
    task_signal(conn, [task["id"]], "kill")
    wait_for(lambda: task_status(conn, task["id"]) == "failed", timeout=10)
    assert time.monotonic() - sent < 5
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


def test_cancel_kills_the_running_process_and_the_agent_keeps_serving(conn, start_agent, tmp_path):
    pid_file = tmp_path / "pid"
    (task,) = task_submit(
        conn, "can", [{"command": f"echo $$ > {pid_file}; exec sleep 60", "shell": True}]
    )
    agent = start_agent("-b", "can")
    process = psutil.Process(_pid_of(pid_file))
    task_cancel(conn, [task["id"]])
    wait_for(lambda: not process.is_running() or process.status() == psutil.STATUS_ZOMBIE,
             timeout=10)  # fmt: skip
    (after,) = task_submit(conn, "can", [{"command": "true"}])
    wait_for(lambda: task_status(conn, after["id"]) == "succeeded", timeout=15)
    assert agent.process.poll() is None


def test_output_of_100000_lines_is_complete_and_in_order(conn, start_agent):
    (task,) = task_submit(conn, "big", [{"command": "seq 1 100000"}])
    start_agent("-b", "big")
    wait_for(lambda: task_status(conn, task["id"]) == "succeeded", timeout=60)
    expected = "".join(f"{i}\n" for i in range(1, 100001))
    assert log_text(conn, task["id"], "stdout") == expected


def test_binary_and_nul_output_is_stored_escaped(conn, start_agent):
    (task,) = task_submit(conn, "bin", [{"command": r"printf 'a\000b\377c\n'", "shell": True}])
    start_agent("-b", "bin")
    wait_for(lambda: task_status(conn, task["id"]) == "succeeded", timeout=20)
    assert log_text(conn, task["id"]) == "a\\x00b\\xffc\n"


def test_sigterm_lets_running_tasks_finish(conn, start_agent):
    (task,) = task_submit(conn, "term", [{"command": "sleep 2; echo done", "shell": True}])
    agent = start_agent("-b", "term", "--shutdown-grace", "30")
    wait_for(lambda: task_status(conn, task["id"]) == "running")
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
    assert task_status(conn, task["id"]) == "succeeded"
    assert log_text(conn, task["id"]) == "done\n"


def test_sigterm_past_the_grace_period_kills_and_hands_back(conn, start_agent):
    (task,) = task_submit(conn, "late", [{"command": "sleep 60"}])
    agent = start_agent("-b", "late", "--shutdown-grace", "1")
    wait_for(lambda: task_status(conn, task["id"]) == "running")
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
    # handed back: pending again, the attempt did not use a retry
    assert task_status(conn, task["id"]) == "pending"
    assert conn.execute("SELECT status, failure_reason FROM scitq.execution").fetchone() == (
        "lost",
        "handed back by the worker at shutdown",
    )


def test_killed_agent_task_succeeds_on_another_agent(conn, start_agent):
    # retries 0, the default: the lost attempt is a free requeue (issue 15.1)
    (task,) = task_submit(conn, "kill9", [{"command": "sleep 2; echo finished", "shell": True}])
    first = start_agent("-b", "kill9", "--lease", "3", "--heartbeat", "0.5")
    wait_for(lambda: task_status(conn, task["id"]) == "running")
    os.killpg(first.process.pid, signal.SIGKILL)
    first.wait(timeout=10)
    start_agent("-b", "kill9", "--lease", "3")
    wait_for(lambda: task_status(conn, task["id"]) == "succeeded", timeout=60)
    rows = executions(conn, "kill9")
    assert [(r[1], r[5]) for r in rows] == [("lost", 1), ("succeeded", 2)]
    assert log_text(conn, task["id"]).endswith("finished\n")
    assert conn.execute(
        "SELECT attempts_used, requeue_count FROM scitq.task_overview WHERE task_id = %s",
        (task["id"],),
    ).fetchone() == (1, 1)


def test_drain_exits_when_no_work_is_left(conn, start_agent):
    task_submit(conn, "dr", [{"command": "true"}] * 5)
    agent = start_agent("-b", "dr", "-c", "2", "--drain", "--no-listen")
    assert agent.wait(timeout=60) == 0
    assert all_done(conn, "dr")


def test_notify_wakes_an_idle_agent_quickly(conn, start_agent):
    agent = start_agent("-b", "wake", "--poll-min", "30", "--poll-max", "30")
    wait_for(lambda: worker_id(conn, agent.name))
    time.sleep(1.5)  # the agent is now in its long idle wait
    submitted = time.monotonic()
    (task,) = task_submit(conn, "wake", [{"command": "true"}])
    wait_for(lambda: task_status(conn, task["id"]) == "succeeded", timeout=20)
    assert time.monotonic() - submitted < 10  # far below the 30 s poll


@pytest.mark.parametrize("concurrency", ["-1"])
def test_bad_options_give_one_line(start_agent, concurrency):
    agent = start_agent("-c", concurrency)
    assert agent.wait(timeout=30) == 2
    log = agent.log()
    assert "--concurrency must be 0 or more" in log
    assert "Traceback" not in log
