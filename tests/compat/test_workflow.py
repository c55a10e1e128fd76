"""scitq v1's ``scitq.workflow.Workflow``: a pipeline written in v1's style (steps, gather
in its sub-path and action forms, rounds, base_storage, v1's space-separated inputs) runs
unchanged on real agents, in the locally built busybox image through podman, with its
data in a moto S3 server named by the environment; then its outputs are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from scitq import Client
from scitq import Workflow as NativeWorkflow
from scitq.errors import InvalidArgument
from scitq.workflow import Workflow, WorkflowException
from scitq.workflow.native import Workflow as Native
from tests.agent.test_containers import IMAGE, podman  # noqa: F401 - the podman fixture
from tests.fixtures.servers import S3Server


def v1_pipeline(source: str, base: str, client: Client, **options: object) -> Workflow:
    """What a v1 user wrote (their script, but for ``client=``: the test's database)."""
    from scitq.fetch import list_content

    wf = Workflow("v1demo", max_step_workers=2, provider="local", region="local",
                  flavor="local", max_workflow_workers=3, retry=1, rounds=3,
                  container=IMAGE, base_storage=base, client=client, **options)  # type: ignore[arg-type]  # fmt: skip
    samples: dict[str, list[str]] = {}
    for item in list_content(source):
        if item.name.endswith(".fq"):
            samples.setdefault(item.name.split("/")[-2], []).append(item.name)
    for sample, fastqs in sorted(samples.items()):
        count = wf.step(
            batch="count", name=f"count-{sample}", concurrency=2, shell=True,
            command=f"cat /input/*.fq | wc -l > /output/{sample}.count && "
            f"mkdir -p /output/detail && ls /input > /output/detail/{sample}.txt",
            input=" ".join(fastqs), rel_output=f"count/{sample}",
        )  # fmt: skip
    wf.step(
        batch="report", name="files", concurrency=1, maximum_workers=2, shell=True,
        command="cat /input/detail/*.txt > /output/files.txt; ls /input > /output/top.txt",
        required_tasks=count.gather(), input=count.gather("output/detail|mv:detail"),
        rel_output="report",
    )  # fmt: skip
    wf.step(
        batch="report", name="total", shell=True, required_tasks=count.gather(),
        command="cat /input/*.count > /output/counts.txt", input=count.gather("output"),
        output=f"{base}/total",
    )  # fmt: skip
    return wf


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_v1_workflow_runs_unchanged_and_its_outputs_are_right(
    db: str,
    start_agent,  # type: ignore[no-untyped-def]
    s3_env: S3Server,
    s3_bucket: str,
    podman: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = s3_env.client()
    for sample, reads in (("s1", 2), ("s2", 3)):
        for read in (1, 2):
            body = "".join(f"@{sample}.{i}\nACGT\n+\nIIII\n" for i in range(reads))
            client.put_object(Bucket=s3_bucket, Key=f"raw/{sample}/r{read}.fq", Body=body)
    source, base = f"s3://{s3_bucket}/raw", f"s3://{s3_bucket}/v1demo"
    for _ in range(2):
        start_agent("-c", "2", "--container-runtime", "podman", env=s3_env.env())
    monkeypatch.chdir(tmp_path)

    with Client(db) as scitq:
        wf = v1_pipeline(source, base, scitq)
        steps = wf.steps
        assert [s.name for s in steps] == ["count-s1", "count-s2", "files", "total"]
        assert steps[0].input == f"{source}/s1/r1.fq {source}/s1/r2.fq"  # v1's string
        assert steps[0].output == f"{base}/count/s1/"
        assert (steps[2].batch, steps[2].concurrency) == ("v1demo.report", 1)
        summary = wf.run()
        assert summary.ok, str(summary)
        assert [s.status for s in steps] == ["succeeded"] * 4
        assert sorted(steps[2].required_task_ids) == sorted(s.task_id for s in steps[:2])

        # rounds and the worker budget became v1's recruiters
        recruiters = {
            row[0]: row[1:]
            for row in scitq.connection.execute(
                "SELECT b.name, r.tasks_per_worker, r.max_workers, r.concurrency "
                "FROM scitq.recruiter r JOIN scitq.batch b ON b.id = r.batch_id"
            ).fetchall()
        }
        assert recruiters == {"v1demo.count": (6, 2, 2), "v1demo.report": (3, 1, 1)}

        from scitq.fetch import sync

        sync(base, "results")  # the v1 examples' last line
        results = tmp_path / "results"
        assert (results / "count" / "s1" / "s1.count").read_text().strip() == "16"
        assert (results / "count" / "s2" / "s2.count").read_text().strip() == "24"
        assert (results / "report" / "files.txt").read_text().split() == [
            "r1.fq", "r2.fq", "r1.fq", "r2.fq"
        ]  # fmt: skip
        assert (results / "report" / "top.txt").read_text().split() == ["detail"]
        assert sorted((results / "total" / "counts.txt").read_text().split()) == ["16", "24"]
        assert "v1demo" in str(summary) and steps[3].get_error() == ""

        steps[0].download(str(tmp_path / "one"))
        assert (tmp_path / "one" / "s1.count").exists()
        wf.download(destination=str(tmp_path / "all"))
        assert (tmp_path / "all" / "total" / "counts.txt").exists()

        # use_cache: a second run of the script finds its succeeded tasks again
        again = v1_pipeline(source, base, scitq, use_cache=True)
        assert again.submit() == []
        assert [s.task_id for s in again.steps] == [s.task_id for s in steps]

        wf.clean()
        assert (tmp_path / "v1demo" / "count-s1_output.log").exists()
        (left,) = scitq.connection.execute("SELECT count(*) FROM scitq.task").fetchone()
        (recruiting,) = scitq.connection.execute("SELECT count(*) FROM scitq.recruiter").fetchone()
        assert (left, recruiting) == (0, 0)


def test_v1_arguments_are_checked_with_the_step_named(db: str) -> None:
    with Client(db) as client:
        with pytest.raises(WorkflowException, match="debug=True"):
            Workflow("w", debug=True, client=client)
        with pytest.raises(WorkflowException, match="max_workflow_workers"):
            Workflow("w", provider="local", client=client)
        wf = Workflow("w", max_step_workers=1, flavor="local", client=client)
        with pytest.raises(WorkflowException, match="step 'a #1': unknown argument 'inputs'"):
            wf.step("a", "true", concurrency=1, inputs=["s3://b/x"])
        with pytest.raises(WorkflowException, match="step 'x': a concurrency is mandatory"):
            wf.step("a", "true", name="x")
        with pytest.raises(WorkflowException, match=r"rel_output if Workflow\.base_storage"):
            wf.step("a", "true", concurrency=1, rel_output="out")
        with pytest.raises(WorkflowException, match="step 'c': unknown provider 'nowhere'"):
            wf.step("c", "true", name="c", concurrency=1, provider="nowhere")
        with pytest.raises(WorkflowException, match="shell_code and @remote"):
            wf.step("a", print, concurrency=1)  # type: ignore[arg-type]
        first = wf.step("a", "true", concurrency=1, input="s3://b/1 s3://b/2",
                        resource=["s3://b/r1 s3://b/r2"], output="s3://b/out")  # fmt: skip
        assert first.native.fields["inputs"] == ["s3://b/1", "s3://b/2"]
        assert first.native.fields["resources"] == ["s3://b/r1", "s3://b/r2"]
        assert first.output == "s3://b/out/"
        second = wf.step("a", "true", shell="bash", required_tasks=first)
        assert second.command == "bash -c true" and second.name == "a #2"
        assert [s.name for s in second.gather()] == ["a #1", "a #2"]
        with pytest.raises(InvalidArgument, match="step 'a #2' has no output"):
            second.gather("output")
        third = wf.step("b", "true", concurrency=1, output="s3://b/o3/")
        assert third.gather("output/sub|mv:sub") == ["s3://b/o3/sub|mv:sub"]
        assert third.gather("/output/sub") == ["s3://b/o3/sub"]
        assert third.gather("output|untar") == ["s3://b/o3/|untar"]
        with pytest.raises(InvalidArgument, match="cannot gather 'colour'"):
            third.gather("colour")

        wf.pause()  # submits nothing: no batch exists yet
        assert first.task_id > 0 and first.status == "pending"
        wf.pause(suspend=True)
        paused = client.connection.execute(
            "SELECT name, is_paused FROM scitq.batch ORDER BY name"
        ).fetchall()
        assert paused == [("w.a", True), ("w.b", True)]
        wf.unpause()
        assert {p.is_paused for p in client.batches()} == {False}
        wf.clean(force=True)
        (left,) = client.connection.execute("SELECT count(*) FROM scitq.task").fetchone()
        assert left == 0


def test_the_native_workflow_stays_at_the_root_and_refuses_unknown_keywords(db: str) -> None:
    assert NativeWorkflow is Native
    with Client(db) as client:
        wf = NativeWorkflow("n", client=client)
        with pytest.raises(InvalidArgument, match="step 'one' of batch 's': unknown argument"):
            wf.step("s", "true", name="one", input=["s3://b/x"])
