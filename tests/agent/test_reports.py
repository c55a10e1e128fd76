"""The reporter batches phases and results of many executions into few round trips."""

from __future__ import annotations

import asyncio

import pytest

from scitq.agent.link import DatabaseLink
from scitq.agent.reports import ClaimHook, Reporter
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


async def _report_and_claim(
    db, worker, claims, size, *, cancel_task_ids=(), conn=None, wall_seconds=None
):
    """Finish ``claims`` through a reporter whose passes claim ``size(finishing)`` more."""
    link = DatabaseLink(db)
    taken: list[dict] = []
    reporter = Reporter(link, worker, lambda ids: None, ClaimHook(size=size, take=taken.extend))
    loop = asyncio.create_task(reporter.run())
    try:
        if cancel_task_ids:
            task_cancel(conn, list(cancel_task_ids))
        results = (
            {"execution_id": c["execution_id"], "return_code": 0, "wall_seconds": wall_seconds}
            for c in claims
        )
        stored = await asyncio.wait_for(
            asyncio.gather(*(reporter.finish(r) for r in results)), timeout=30
        )
    finally:
        loop.cancel()
        await link.close()
    return stored, taken, reporter


def test_a_pass_of_results_claims_the_slots_it_frees_in_the_same_call(db, conn):
    task_submit(conn, "r", [{"command": "true"}] * 10)
    worker = worker_register(conn, "w", batches=["r"], concurrency=4)["id"]
    claims = task_claim(conn, worker, 4)
    asked: list[int] = []

    def size(finishing: int) -> int:
        asked.append(finishing)
        return finishing

    stored, taken, reporter = asyncio.run(_report_and_claim(db, worker, claims, size))
    assert stored == [True] * 4
    assert sum(asked) == 4 and len(taken) == 4 == reporter.claimed
    assert reporter.calls == len(asked)  # each pass one round trip, claim included
    live = conn.execute(
        "SELECT e.id FROM scitq.execution e WHERE e.worker_id = %s AND e.status = 'assigned'"
        " ORDER BY e.id",
        (worker,),
    ).fetchall()
    assert [row[0] for row in live] == sorted(c["execution_id"] for c in taken)
    finished = conn.execute("SELECT count(*) FROM scitq.task WHERE status = 'succeeded'")
    assert finished.fetchone()[0] == 4


@pytest.mark.parametrize(("wall_seconds", "bound"), [(1.0, 2), (0.01, 16)], ids=["long", "short"])
def test_the_claim_of_a_pass_keeps_the_worker_bound(db, conn, wall_seconds, bound):
    task_submit(conn, "r", [{"command": "true"}] * 20)
    worker = worker_register(conn, "w", batches=["r"], concurrency=2)["id"]
    claims = task_claim(conn, worker, 2)
    # the hook asks for far more than the worker may hold: the database gives its slots,
    # and read-ahead (8 x concurrency in all) once the tasks are known to be short
    _, taken, _ = asyncio.run(
        _report_and_claim(db, worker, claims, lambda n: 50, wall_seconds=wall_seconds)
    )
    assert len(taken) == bound
    held = conn.execute(
        "SELECT count(*) FROM scitq.execution WHERE worker_id = %s AND status = 'assigned'",
        (worker,),
    )
    assert held.fetchone()[0] == bound


def test_a_refused_result_rolls_back_the_claim_of_its_pass(db, conn):
    """Fenced: a pass with a result for an execution that is no longer ours stores nothing
    and claims nothing; the other results are stored on their own, without a claim."""
    task_submit(conn, "r", [{"command": "true"}] * 6)
    worker = worker_register(conn, "w", batches=["r"], concurrency=3)["id"]
    claims = task_claim(conn, worker, 3)
    lost = claims[1]
    stored, taken, reporter = asyncio.run(
        _report_and_claim(db, worker, claims, lambda n: n, cancel_task_ids=[lost["task_id"]],
                          conn=conn)
    )  # fmt: skip
    assert stored == [True, False, True]
    assert taken == [] and reporter.claimed == 0
    pending = conn.execute("SELECT count(*) FROM scitq.task WHERE status = 'pending'")
    assert pending.fetchone()[0] == 3  # no claim survived the refused pass


def test_a_result_sent_again_is_a_replay_and_claims_nothing(db, conn):
    """Idempotent: the same results sent twice (a reply lost after the commit) are stored
    once; the second pass is a replay (execution_finish_v1 returns them as stored), so it
    changes nothing, and its claim finds the worker full: the first pass's claims hold
    the slots."""
    task_submit(conn, "r", [{"command": "true"}] * 6)
    worker = worker_register(conn, "w", batches=["r"], concurrency=2)["id"]
    claims = task_claim(conn, worker, 2)
    # tasks of 1 s: no read-ahead (test_the_claim_of_a_pass_keeps_the_worker_bound)
    first, taken, _ = asyncio.run(
        _report_and_claim(db, worker, claims, lambda n: n, wall_seconds=1)
    )
    again, retaken, reporter = asyncio.run(
        _report_and_claim(db, worker, claims, lambda n: n, wall_seconds=1)
    )
    assert first == [True, True] and len(taken) == 2
    assert again == [True, True] and retaken == [] and reporter.claimed == 0
    counts = dict(conn.execute("SELECT status, count(*) FROM scitq.task GROUP BY 1").fetchall())
    assert counts == {"succeeded": 2, "assigned": 2, "pending": 2}
