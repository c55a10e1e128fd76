"""A pipeline written in scitq v1's style (tests/compat/pipelines/v1_read_counts.py: the
calls and patterns of the published metaphlan4 and kraken2 scripts) runs unchanged, as a
user runs it: a Python process that finds its server in SCITQ_SERVER and its S3 in the
configuration; a provider named ``ovh`` configured as local processes; the container, a
local busybox image standing in for the tools, through podman; moto as S3."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from scitq.lib import Server
from tests.agent.test_containers import IMAGE, podman  # noqa: F401 - the podman fixture
from tests.compat.v1_setup import FAST_AGENT, scheduler, write_config  # noqa: F401

pytestmark = [pytest.mark.sql, pytest.mark.slow, pytest.mark.timeout(300)]

PIPELINE = Path(__file__).parent / "pipelines" / "v1_read_counts.py"
READS = {"s1": (3, 2), "s2": (5, 1), "s3": (4, 4)}  # reads in R1 and R2 of each sample


def fastq(reads: int, tag: str) -> bytes:
    text = "".join(f"@{tag}.{n}\nACGT\n+\nIIII\n" for n in range(reads))
    return gzip.compress(text.encode())


def database() -> bytes:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        marker = b"db-v1\n"
        info = tarfile.TarInfo("db/marker.txt")
        info.size = len(marker)
        tar.addfile(info, io.BytesIO(marker))
    return archive.getvalue()


def test_a_v1_style_pipeline_runs_unchanged(
    db, tmp_path, s3_env, s3_bucket, monkeypatch,
    scheduler,  # noqa: F811 - the fixture
    podman,  # noqa: F811 - the fixture
):  # fmt: skip
    s3 = s3_env.client()
    for sample, (r1, r2) in READS.items():
        for read, count in (("R1", r1), ("R2", r2)):
            key = f"samples/{sample}/{sample}_{read}.fastq.gz"
            s3.put_object(Bucket=s3_bucket, Key=key, Body=fastq(count, f"{sample}{read}"))
    s3.put_object(Bucket=s3_bucket, Key="samples/README.txt", Body=b"not a sample")
    s3.put_object(Bucket=s3_bucket, Key="db/counts_db.tgz", Body=database())
    # the scheduler and the agents it starts read this (and the S3 settings of s3_env)
    agent_options = [*FAST_AGENT, "--container-runtime", "podman"]
    config = write_config(tmp_path, agent_options=agent_options)
    monkeypatch.setenv("SCITQ_CONFIG", str(config))
    scheduler()

    bucket = f"s3://{s3_bucket}"
    local = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, str(PIPELINE), f"{bucket}/samples/", f"{bucket}/db/counts_db.tgz",
         f"{bucket}/work/", f"{bucket}/final/", "--image", IMAGE, "--local", str(local)],
        env={**os.environ, "SCITQ_SERVER": db}, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr

    # the per-sample outputs, the whole-folder phase and the synced result
    for sample, (r1, r2) in READS.items():
        body = s3.get_object(Bucket=s3_bucket, Key=f"work/{sample}/{sample}.count")["Body"]
        assert body.read().decode() == f"{r1 + r2}\ndb-v1\n"
    expected = sorted(f"{sample} {r1 + r2}" for sample, (r1, r2) in READS.items())
    assert sorted((local / "counts.tsv").read_text().splitlines()) == expected
    assert run.stdout.count("All tasks done!") == 2
    assert "Retrying" not in run.stdout

    with Server(db) as server:
        phase1 = server.tasks(batch="counts")
        assert sorted(t["name"] for t in phase1) == ["s1", "s2", "s3"]
        assert all(len(t["input"].split()) == 2 for t in phase1)  # each sample's R1 and R2
        deployed = server.client.connection.execute(
            "SELECT DISTINCT provider, region, flavor FROM scitq.instance ORDER BY flavor"
        ).fetchall()
        assert deployed == [("ovh", "GRA11", "c2-120"), ("ovh", "GRA11", "c2-30")]
        executions = server.executions(batch="counts")
        assert {e["status"] for e in executions} == {"succeeded"} and len(executions) == 3
