"""Waiters hear that a batch ended: the coalesced notification of ``task_set_status``
and `scitq.db.completion.EndedTasks`, with polling as the fallback."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from scitq.client import Client
from scitq.db.completion import CHANNEL, EndedTasks
from scitq.db.connection import connect
from scitq.db.execution import execution_finish
from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_register


def _batch_id(conn: psycopg.Connection[Any], name: str) -> int:
    return int(conn.execute("SELECT id FROM scitq.batch WHERE name = %s", (name,)).fetchone()[0])


def _finish(conn: psycopg.Connection[Any], worker: int, claims: list[dict[str, Any]]) -> None:
    execution_finish(conn, worker, [{"execution_id": c["execution_id"], "return_code": 0}
                                    for c in claims])  # fmt: skip


def test_the_call_that_ends_a_batch_notifies_once_per_batch(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    task_submit(conn, "a", [{"command": "true"}] * 3)
    task_submit(conn, "b", [{"command": "true"}] * 2)
    worker = worker_register(conn, "w", concurrency=10)["id"]
    with connect(db) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        claims = task_claim(conn, worker, 10)
        in_b = [c for c in claims if c["batch"] == "b"]
        claimed = list(listener.notifies(timeout=0.2))
        _finish(conn, worker, [c for c in claims if c["batch"] == "a"] + in_b[:1])
        first = [n.payload for n in listener.notifies(timeout=0.5)]
        _finish(conn, worker, in_b[1:])
        second = [n.payload for n in listener.notifies(timeout=0.5)]
    assert claimed == []  # claiming ends nothing
    assert first == [str(_batch_id(conn, "a"))]  # once for 3 tasks; b still has a live one
    assert second == [str(_batch_id(conn, "b"))]


def test_ended_tasks_wakes_on_its_batch_only(db: str, conn: psycopg.Connection[Any]):
    task_submit(conn, "mine", [{"command": "true"}])
    task_submit(conn, "other", [{"command": "true"}])
    worker = worker_register(conn, "w", concurrency=10)["id"]
    claims = {c["batch"]: c for c in task_claim(conn, worker, 10)}
    with connect(db) as waiter, EndedTasks(waiter, _batch_id(conn, "mine")) as ended:
        assert ended.listening
        _finish(conn, worker, [claims["other"]])
        assert ended.wait(0.5) is False  # another batch's tasks
        finisher = threading.Timer(0.2, _finish, (conn, worker, [claims["mine"]]))
        finisher.start()
        heard = ended.wait(60)  # wakes on the notification, long before 60 s
        finisher.join()
    assert heard is True


def test_the_wait_ends_when_no_notification_is_delivered(db: str, conn: psycopg.Connection[Any]):
    """As behind PgBouncer in transaction pooling (tests/chaos/test_pgbouncer.py has the
    real one): the LISTEN seems accepted and nothing is ever delivered; here a stand-in
    turns the wait's LISTEN into a no-op. The fallback poll still ends the wait."""
    task_submit(conn, "p", [{"command": "true"}])
    worker = worker_register(conn, "w")["id"]
    claims = task_claim(conn, worker, 1)
    with Client(db) as client:
        listen = client.connection.execute
        client.connection.execute = lambda query, *args, **kwargs: (  # type: ignore[method-assign]
            listen("SELECT 1") if "LISTEN" in str(query) else listen(query, *args, **kwargs)
        )
        threading.Timer(0.2, _finish, (conn, worker, claims)).start()
        started = time.monotonic()
        final = client.wait("p")
        client.connection.execute = listen  # type: ignore[method-assign]
    assert (final.succeeded, final.remaining) == (1, 0)
    assert time.monotonic() - started < 60
