"""scitq.Workflow against a real database and real agents."""

from __future__ import annotations

import pytest

from scitq import Client, Workflow
from scitq.errors import InvalidArgument, InvalidUri


def pipeline(client, samples=50):
    """The script a user would write: 3 steps per sample, then a gather."""
    wf = Workflow("demo", client=client, retries=1, shell=True)
    for i in range(samples):
        prep = wf.step("prep", f"echo prep {i}", name=f"prep-{i}")
        count = wf.step("count", f"echo count {i}", name=f"count-{i}", required_tasks=prep)
        wf.step("check", f"echo check {i}", name=f"check-{i}", required_tasks=[prep, count])
    wf.step("report", "echo all done", name="report", required_tasks=wf.gather("check"))
    return wf


def test_three_steps_of_50_samples_and_a_gather_run_to_completion_and_rerun_skips(db, start_agent):
    with Client(db) as client:
        wf = pipeline(client)
        submitted = wf.submit()
        assert len(submitted) == 151
        start_agent("-c", "4")
        start_agent("-c", "4")
        summary = wf.run(refresh=0.2, timeout=240, live=False)
        assert summary.ok
        assert {b: p.succeeded for b, p in summary.batches.items()} == {
            "demo.prep": 50, "demo.count": 50, "demo.check": 50, "demo.report": 1
        }  # fmt: skip
        assert "demo.check" in str(summary)
        report = wf.steps[-1]
        assert sorted(d.id for d in client.dependencies(report.task_id)) == sorted(
            s.task_id for s in wf.gather("check")
        )
        # the report ran after every check ended
        (report_start,) = client.connection.execute(
            "SELECT run_started_at FROM scitq.execution WHERE task_id = %s", (report.task_id,)
        ).fetchone()
        (last_check,) = client.connection.execute(
            "SELECT max(e.finished_at) FROM scitq.execution e JOIN scitq.task t ON t.id = e.task_id"
            " JOIN scitq.batch b ON b.id = t.batch_id WHERE b.name = 'demo.check'"
        ).fetchone()
        assert report_start >= last_check

        again = pipeline(client)
        assert again.submit() == []  # everything found from the first run
        assert all(step.reused for step in again.steps)
        assert [s.task_id for s in again.steps] == [s.task_id for s in wf.steps]
        assert again.run(refresh=0.1, timeout=10, live=False).ok
        (tasks,) = client.connection.execute("SELECT count(*) FROM scitq.task").fetchone()
        (executions,) = client.connection.execute("SELECT count(*) FROM scitq.execution").fetchone()
        assert (tasks, executions) == (151, 151)


def test_a_failed_step_cancels_its_dependents_and_a_rerun_retries_them(db, start_agent, tmp_path):
    flag = tmp_path / "fixed"

    def script(client):
        wf = Workflow("fragile", client=client, shell=True)
        first = wf.step("a", f"test -e {flag}", name="a")
        wf.step("b", "echo b", name="b", required_tasks=first)
        wf.step("c", "echo c", name="c", required_tasks=wf.gather("b"))
        return wf

    with Client(db) as client:
        start_agent("-c", "2")
        summary = script(client).run(refresh=0.2, timeout=60, live=False)
        assert not summary.ok
        outcome = {(u.name, u.status) for u in summary.unsuccessful}
        assert outcome == {("a", "failed"), ("b", "canceled"), ("c", "canceled")}
        assert "fragile.a" in str(summary)

        flag.write_text("")
        rerun = script(client)
        assert rerun.submit() == []
        assert rerun.run(refresh=0.2, timeout=60, live=False).ok


def test_bad_steps_are_refused_before_anything_is_queued(db):
    with Client(db) as client:
        with pytest.raises(InvalidArgument, match="without dots"):
            Workflow("a.b", client=client)
        with pytest.raises(InvalidArgument, match="unknown workflow default 'colour'"):
            Workflow("w", client=client, colour="red")
        wf = Workflow("w", client=client)
        wf.step("s", "true", name="one")
        with pytest.raises(InvalidArgument, match="already in batch 's'"):
            wf.step("s", "true", name="one")
        other = Workflow("other", client=client).step("s", "true")
        with pytest.raises(InvalidArgument, match="another workflow"):
            wf.step("s", "true", required_tasks=other)
        with pytest.raises(InvalidArgument, match="required_tasks takes"):
            wf.step("s", "true", required_tasks=["x"])
        wf.step("t", "true", name="bad", inputs=["nosuchscheme://x/y"])
        with pytest.raises(InvalidUri, match="nosuchscheme"):
            wf.submit()
        (count,) = client.connection.execute("SELECT count(*) FROM scitq.task").fetchone()
        assert count == 0  # all or none
        assert all(step.task_id is None for step in wf.steps)
