"""`scitq.Client`, the Python API, against a real database."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import scitq
from scitq.client import BatchProgress, Client, Task, WaitTimeout
from scitq.db.execution import execution_append_output, execution_finish, execution_set_phase
from scitq.db.task import task_claim
from scitq.db.worker import worker_register
from scitq.errors import DependencyCycle, InvalidArgument, NotFound

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(db: str) -> Any:
    with Client(db) as opened:
        yield opened


def _run(conn: psycopg.Connection[Any], worker: int, return_code: int = 0, text: str = "") -> int:
    """Claim one task, give it output, finish it; returns its id."""
    (claimed,) = task_claim(conn, worker, 1)
    execution = claimed["execution_id"]
    execution_set_phase(conn, worker, execution, "running")
    if text:
        execution_append_output(conn, worker, [(execution, 0, "stdout", text)])
    execution_finish(conn, worker, [{"execution_id": execution, "return_code": return_code}])
    return int(claimed["task_id"])


def test_import_scitq_stays_light_and_client_is_lazy() -> None:
    code = (
        "import sys, scitq; light = 'psycopg' not in sys.modules; "
        "from scitq import Client; print(light, Client.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True
    )
    assert out.stdout.split() == ["True", "scitq.client"]
    assert scitq.Client is Client
    with pytest.raises(AttributeError):
        _ = scitq.Workflowz  # type: ignore[attr-defined]


def test_settings_come_from_the_environment_and_the_client_closes(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCITQ_DATABASE_URL", db)
    with Client() as from_env:
        assert from_env.settings.database.url == db
        assert from_env.batches() == []
    assert from_env.connection.closed


def test_submit_returns_the_stored_task(client: Client, conn: psycopg.Connection[Any]) -> None:
    first = client.submit("true", batch="b", name="first")
    task = client.submit(
        ["printf", "%s", "a b"], batch="b", name="second", inputs=("s3://x/1",), retries=2,
        env={"K": "v"}, tags=["t"], depends_on=[first], priority=3,
    )  # fmt: skip

    assert isinstance(task, Task)
    assert task.command == "printf %s 'a b'"
    assert (task.batch, task.name, task.status) == ("b", "second", "waiting")
    assert (task.inputs, task.retries, task.env, task.tags) == (
        ("s3://x/1",),
        2,
        {"K": "v"},
        ("t",),
    )
    assert task.depends_on == (first.id,)
    assert task.priority == 3
    assert client.get(task.id) == task
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.status = "failed"  # type: ignore[misc]
    default = client.submit("true")
    assert default.batch == "Default"


def test_submit_rejects_unknown_fields_and_missing_tasks(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="unknown field 'retry'"):
        client.submit("true", retry=2)
    with pytest.raises(NotFound, match="task 999"):
        client.get(999)
    with pytest.raises(InvalidArgument, match="no task to submit"):
        client.submit_many("b", [])


def test_submit_many_in_chunks_all_or_nothing(
    client: Client, conn: psycopg.Connection[Any]
) -> None:
    tasks = [{"command": f"echo {i}", "name": f"t{i}"} for i in range(7)]
    tasks.append({"command": "gather", "depends_on_names": ["t0", "t6"]})

    submitted = client.submit_many("many", tasks, chunk_size=3)

    assert [s.name for s in submitted] == [f"t{i}" for i in range(7)] + [None]
    assert submitted[-1].status == "waiting"
    count = conn.execute("SELECT count(*) FROM scitq.task_dependency").fetchone()
    assert count == (2,)

    bad = [{"command": "ok"}] * 4 + [{"command": "x", "retries": -1}]
    with pytest.raises(InvalidArgument, match="task #5"):  # position in the whole list
        client.submit_many("many", bad, chunk_size=2)
    cycle = [{"command": "a", "name": "a", "depends_on_names": ["b"]},
             {"command": "b", "name": "b", "depends_on_names": ["a"]}]  # fmt: skip
    with pytest.raises(DependencyCycle):
        client.submit_many("many", cycle)
    assert conn.execute("SELECT count(*) FROM scitq.task").fetchone() == (8,)


def test_pages_and_iteration_by_id(client: Client, conn: psycopg.Connection[Any]) -> None:
    ids = [s.id for s in client.submit_many("p", [{"command": str(i)} for i in range(25)])]
    other = client.submit("x", batch="q").id
    worker = worker_register(conn, "w1", batches=["q"])["id"]
    _run(conn, worker, return_code=1)

    assert [t.id for t in client.page(limit=10)] == ids[:10]
    assert [t.id for t in client.page(limit=10, after=ids[9])] == ids[10:20]
    assert [t.id for t in client.tasks(batch="p", page_size=4)] == ids
    assert [t.id for t in client.tasks(page_size=4, limit=6, after=ids[2])] == ids[3:9]
    failed = list(client.tasks(status="failed"))
    assert [(t.id, t.worker_name, t.return_code) for t in failed] == [(other, "w1", 1)]
    assert [t.id for t in client.tasks(worker="w1")] == [other]
    with pytest.raises(InvalidArgument, match="unknown task status done"):
        client.page(status=["done"])
    with pytest.raises(NotFound, match="batch 'zzz'"):
        client.page(batch="zzz")


def test_retry_cancel_and_executions(client: Client, conn: psycopg.Connection[Any]) -> None:
    a = client.submit("a", batch="r", name="a")
    b = client.submit("b", batch="r", depends_on_names=["a"])
    worker = worker_register(conn, "w1")["id"]
    _run(conn, worker, return_code=2)

    assert client.get(b.id).status == "canceled"
    assert client.retry([b.id]) == {a.id: "pending", b.id: "waiting"}
    assert client.cancel([a.id], "enough") == {a.id: "canceled"}
    assert client.cancel([a.id]) == {}
    attempts = client.executions(a.id)
    assert [(e.attempt, e.status, e.return_code, e.is_live) for e in attempts] == [
        (1, "failed", 2, False)
    ]
    assert client.dependencies(b.id)[0].id == a.id


def test_wait_reports_progress_until_the_batch_ends(
    client: Client, conn: psycopg.Connection[Any]
) -> None:
    client.submit_many("w", [{"command": "a"}, {"command": "b"}])
    worker = worker_register(conn, "w1")["id"]
    seen: list[BatchProgress] = []

    def work() -> None:
        time.sleep(0.3)
        _run(conn, worker)
        time.sleep(0.3)
        _run(conn, worker, return_code=1)

    thread = threading.Thread(target=work)
    thread.start()
    final = client.wait("w", interval=0.05, progress=seen.append)
    thread.join()

    assert (final.succeeded, final.failed, final.remaining, final.done) == (1, 1, 0, 2)
    assert seen[0].remaining == 2 and seen[-1] == final
    assert {p.remaining for p in seen} == {2, 1, 0}

    client.submit("c", batch="w")
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="still has 1 task to run") as raised:
        client.wait("w", timeout=0.3, interval=0.05)
    assert raised.value.exit_code == 9
    assert time.monotonic() - started < 5


def test_logs_of_attempts_and_following(client: Client, conn: psycopg.Connection[Any]) -> None:
    task = client.submit("a", batch="l", retries=1, retry_delay_seconds=0)
    worker = worker_register(conn, "w1")["id"]
    _run(conn, worker, return_code=1, text="first\n")
    _run(conn, worker, text="second\n")

    assert client.log(task.id) == "second\n"
    assert client.log(task.id, attempt=1) == "first\n"
    assert client.log(task.id, streams=["stderr"]) == ""
    with pytest.raises(InvalidArgument, match="unknown stream"):
        client.log(task.id, streams=["out"])

    live = client.submit("live", batch="l")
    (claimed,) = task_claim(conn, worker, 1)
    assert claimed["task_id"] == live.id
    execution = claimed["execution_id"]
    execution_set_phase(conn, worker, execution, "running")

    def write() -> None:
        for seq in range(3):
            time.sleep(0.2)
            execution_append_output(conn, worker, [(execution, seq, "stdout", f"{seq}\n")])
        execution_finish(conn, worker, [{"execution_id": execution, "return_code": 0}])

    thread = threading.Thread(target=write)
    thread.start()
    chunks = list(client.log_chunks(live.id, follow=True, interval=0.05))
    thread.join()
    assert [c.text for c in chunks] == ["0\n", "1\n", "2\n"]
    assert [c.seq for c in client.log_chunks(live.id, tail=2)] == [1, 2]
    assert client.log(client.submit("never run", batch="l").id) == ""


def test_explain(client: Client) -> None:
    task = client.submit("a", batch="nobody-serves")
    explanation = client.explain(task.id)
    assert (explanation.code, explanation.status) == ("no_worker", "pending")
    with pytest.raises(NotFound):
        client.explain(12345)
