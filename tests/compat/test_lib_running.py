"""scitq.lib.Server with a real agent: join (v1's retries, return value and printed
lines), executions and their output, workers, batches, signals."""

from __future__ import annotations

import pytest

from scitq.errors import InvalidArgument, NotFound
from scitq.lib import Server
from tests.compat.v1_setup import FAST_AGENT
from tests.fixtures.agents import wait_for

pytestmark = pytest.mark.sql

V1_EXECUTION_KEYS = {
    "execution_id", "worker_id", "task_id", "status", "return_code", "pid",
    "creation_date", "modification_date", "output", "error", "output_files", "command",
    "container", "container_options", "input", "output_folder", "resource", "latest",
}  # fmt: skip


@pytest.fixture
def server(db):
    with Server(db) as server:
        yield server


def test_join_retries_failed_tasks_and_returns_v1_counts(server, start_agent, capsys):
    good = server.task_create("sh -c 'echo hello; echo oops >&2'", name="good", batch="j")
    bad = server.task_create("sh -c 'echo try; exit 3'", name="bad", batch="j")
    agent = start_agent("-b", "j", "-c", "2", *FAST_AGENT)

    counts = server.join([good, bad], retry=2)

    printed = capsys.readouterr().out.splitlines()
    assert "Retrying task bad [1/2]..." in printed and "Retrying task bad [2/2]..." in printed
    assert "Task bad failed too many times giving up" in printed
    assert printed[-1] == "All tasks done!"
    assert any(line.startswith("Remaining tasks pending : ") for line in printed)
    assert counts["succeeded"] == 1 and counts["failed"] == 1
    assert set(counts) == {"paused", "waiting", "pending", "assigned", "accepted", "running",
                           "failed", "succeeded", "debug"}  # fmt: skip

    # three attempts of the failing task: the first and join's two retries
    runs = server.executions(task_id=bad["task_id"])
    assert [(e["status"], e["return_code"], e["latest"]) for e in runs] == [
        ("failed", 3, False), ("failed", 3, False), ("failed", 3, True)]  # fmt: skip
    assert set(runs[0]) == V1_EXECUTION_KEYS
    assert runs[0]["output"] == "try\n"
    worker = server.workers()[0]
    assert runs[0]["worker_id"] == worker["worker_id"] and worker["name"] == agent.name

    ok = server.executions(task_id=good["task_id"], latest=True)[0]
    assert (ok["status"], ok["output"], ok["error"]) == ("succeeded", "hello\n", "oops\n")
    assert server.execution_get(ok["execution_id"])["output"] == "hello\n"
    tail = server.execution_output(ok["execution_id"], output_position=3, error=False)
    assert tail == {"output": "llo\n"}
    newest = server.executions(batch="j", reverse=True, limit=2, no_output=True)
    assert [e["execution_id"] for e in newest] == sorted(
        (e["execution_id"] for e in server.executions(batch="j")), reverse=True)[:2]  # fmt: skip
    assert newest[0]["output"] is None
    assert [e["task_id"] for e in server.executions(task_name="good")] == [good["task_id"]]
    assert len(server.executions(status="failed")) == 3
    assert server.executions(task_id=bad["task_id"], trunc=2)[0]["output"] == "y\n"

    with pytest.raises(RuntimeError, match="Could not complete all the tasks"):
        server.join([good, bad], retry=0, check=True)
    with pytest.raises(RuntimeError, match="task_list should not be empty"):
        server.join([])

    # workers, their tasks, batches
    assert worker["status"] == "running" and worker["batch"] == "j"
    # the heartbeat moves the dates between two reads: the rest of the row must match
    volatile = {"modification_date", "last_contact_date", "load", "memory", "stats"}

    def steady(row: dict) -> dict:
        return {key: value for key, value in row.items() if key not in volatile}

    assert [steady(w) for w in server.workers(batch="j")] == [steady(worker)]
    assert server.workers(batch="other") == []
    assert server.worker_get(worker["worker_id"])["name"] == agent.name
    per_status = {(row["status"], row["count"]) for row in server.workers_tasks()}
    assert per_status == {("succeeded", 1), ("failed", 1)}
    batch = next(b for b in server.batches() if b["batch"] == "j")
    assert batch == {"batch": "j", "succeeded": 1, "failed": 1, "workers": agent.name}


def test_worker_update_signals_and_batch_stop_go_delete(server, start_agent):
    agent = start_agent("-b", "s", "-c", "1", *FAST_AGENT)
    task = server.task_create("sleep 30", batch="s")
    wait_for(lambda: server.task_get(task["task_id"])["status"] == "running", timeout=30)
    worker = server.workers(name=agent.name)[0]
    running = server.worker_executions(worker["worker_id"])
    assert [e["task_id"] for e in running] == [task["task_id"]]
    assert running[0]["status"] == "running"

    updated = server.worker_update(worker["worker_id"], concurrency="3", prefetch=1,
                                   status="paused")  # fmt: skip
    assert (updated["concurrency"], updated["prefetch"], updated["status"]) == (3, 1, "paused")
    with pytest.raises(InvalidArgument, match="a worker's flavor cannot change"):
        server.worker_update(worker["worker_id"], flavor="c2-120")
    server.worker_update(worker["worker_id"], status="running", concurrency=1)

    # SIGKILL through v1's signal API: the attempt ends, the task fails
    signal = server.worker_create_signal(worker["worker_id"], running[0]["execution_id"], 9)
    assert signal == {"execution_id": running[0]["execution_id"],
                      "worker_id": worker["worker_id"], "signal": 9}  # fmt: skip
    wait_for(lambda: server.task_get(task["task_id"])["status"] == "failed", timeout=30)
    with pytest.raises(InvalidArgument, match="signal -2 cannot be sent"):
        server.worker_create_signal(worker["worker_id"], running[0]["execution_id"], -2)

    assert server.batch_stop("s") == {"result": "Ok"}
    later = server.task_create("true", batch="s")
    assert server.client.progress("s").is_paused
    assert server.batch_go("s") == {"result": "Ok"}
    assert not server.client.progress("s").is_paused
    wait_for(lambda: server.task_get(later["task_id"])["status"] == "succeeded", timeout=30)
    assert server.batch_delete("s") == {"result": "Ok"}
    assert server.tasks(batch="s") == []
    with pytest.raises(NotFound):
        server.batch_delete("s")

    removed = server.worker_delete(worker["worker_id"])
    assert removed["name"] == agent.name
    assert server.workers(name=agent.name) == []
