"""The reporter batches phases and results of many executions into few round trips."""

from __future__ import annotations

import asyncio

from scitq.agent.link import DatabaseLink
from scitq.agent.reports import Reporter
from scitq.db.task import task_cancel, task_claim, task_submit
from scitq.db.worker import worker_register


def _claimed(conn, count):
    task_submit(conn, "r", [{"command": "true"}] * count)
    worker = worker_register(conn, "w", batches=["r"], concurrency=count)["id"]
    return worker, task_claim(conn, worker, count)


async def _report(db, worker, claims, *, cancel_task_ids=(), conn=None):
    link = DatabaseLink(db)
    dead: list[int] = []
    reporter = Reporter(link, worker, dead.extend)
    loop = asyncio.create_task(reporter.run())
    try:
        for claim in claims:
            reporter.set_phase(claim["execution_id"], "running")
        if cancel_task_ids:
            task_cancel(conn, list(cancel_task_ids))
        stored = await asyncio.wait_for(
            asyncio.gather(
                *(
                    reporter.finish({"execution_id": c["execution_id"], "return_code": 0})
                    for c in claims
                )
            ),
            timeout=30,
        )
    finally:
        loop.cancel()
        await link.close()
    return stored, dead, reporter.calls


def test_many_results_go_in_few_calls_with_their_phases_first(db, conn):
    worker, claims = _claimed(conn, 20)
    stored, dead, calls = asyncio.run(_report(db, worker, claims))
    assert stored == [True] * 20 and dead == []
    assert calls <= 4  # phases and results of 20 executions: not 2 calls each
    rows = conn.execute(
        "SELECT e.status, e.run_started_at <= e.finished_at, t.status"
        " FROM scitq.execution e JOIN scitq.task t ON t.id = e.task_id"
    ).fetchall()
    assert rows == [("succeeded", True, "succeeded")] * 20


def test_an_execution_no_longer_ours_is_left_out_and_the_rest_is_stored(db, conn):
    worker, claims = _claimed(conn, 5)
    lost = claims[2]
    stored, dead, _ = asyncio.run(
        _report(db, worker, claims, cancel_task_ids=[lost["task_id"]], conn=conn)
    )
    assert stored == [True, True, False, True, True]
    assert lost["execution_id"] in dead
    statuses = dict(conn.execute("SELECT id, status FROM scitq.execution").fetchall())
    assert statuses.pop(lost["execution_id"]) == "canceled"
    assert set(statuses.values()) == {"succeeded"}
