"""The agent stages data: inputs and resources from S3 in, output/ to S3 out.

Real agents, a real moto S3 server process, real PostgreSQL.
"""

from __future__ import annotations

import gzip
import json

import pytest

from scitq.db.task import task_submit
from tests.fixtures.agents import wait_for

RESOURCE_TEXT = b"shared reference\n" * 1000


def _all_done(conn, batch):
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE status NOT IN ('succeeded', 'failed', 'canceled')),"
        " count(*) FROM scitq.task t JOIN scitq.batch b ON b.id = t.batch_id WHERE b.name = %s",
        (batch,),
    ).fetchone()
    return row[1] > 0 and row[0] == 0


def _agent_env(s3_server, cache_dir):
    return {**s3_server.env(), "SCITQ_RESOURCE_CACHE_DIR": str(cache_dir),
            "SCITQ_TRANSFER_BACKOFF_BASE_SECONDS": "0.05",
            "SCITQ_TRANSFER_BACKOFF_MAX_SECONDS": "0.2"}  # fmt: skip


@pytest.mark.slow
def test_twenty_tasks_read_s3_share_a_resource_and_write_outputs(
    conn, start_agent, s3_server, s3_bucket, tmp_path
):
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="ref/ref.txt.gz", Body=gzip.compress(RESOURCE_TEXT))
    tasks = []
    for i in range(20):
        s3.put_object(Bucket=s3_bucket, Key=f"in/{i}.txt", Body=f"input {i}\n".encode())
        tasks.append({
            "name": f"t{i}",
            "command": f'cat "$INPUT/{i}.txt" "$RESOURCE/ref.txt" | wc -c > "$OUTPUT/size";'
                       f' cp "$INPUT/{i}.txt" "$OUTPUT/copy.txt"',
            "shell": True,
            "inputs": [f"s3://{s3_bucket}/in/{i}.txt"],
            "resources": [f"s3://{s3_bucket}/ref/ref.txt.gz|gunzip"],
            "output": f"s3://{s3_bucket}/out/{i}/",
        })  # fmt: skip
    task_submit(conn, "staged", tasks)
    caches = [tmp_path / "cache-a", tmp_path / "cache-b"]
    for name, cache in zip(("a", "b"), caches, strict=True):
        start_agent("-b", "staged", "-c", "4", "-p", "2", name=name,
                    env=_agent_env(s3_server, cache))  # fmt: skip
    wait_for(lambda: _all_done(conn, "staged"), timeout=120)

    statuses = conn.execute(
        "SELECT t.name, t.status, e.failure_reason FROM scitq.task t"
        " JOIN scitq.execution e ON e.task_id = t.id"
    ).fetchall()
    assert {row[1] for row in statuses} == {"succeeded"}, statuses
    for i in range(20):
        line = f"input {i}\n".encode()
        body = s3.get_object(Bucket=s3_bucket, Key=f"out/{i}/copy.txt")["Body"].read()
        assert body == line
        size = s3.get_object(Bucket=s3_bucket, Key=f"out/{i}/size")["Body"].read()
        assert int(size) == len(line) + len(RESOURCE_TEXT)
    # the resource was downloaded once per worker: one execution of each paid for it
    rows = conn.execute(
        "SELECT w.name, e.bytes_in, e.bytes_out, e.download_started_at IS NOT NULL,"
        " e.upload_started_at IS NOT NULL FROM scitq.execution e"
        " JOIN scitq.worker w ON w.id = e.worker_id"
    ).fetchall()
    resource_size = len(gzip.compress(RESOURCE_TEXT))
    payers = [row[0] for row in rows if row[1] > resource_size]
    assert sorted(payers) == sorted({row[0] for row in rows})
    assert all(row[2] > 0 and row[3] and row[4] for row in rows)
    for cache in caches:
        if cache.exists():
            index = json.loads((cache / "index.json").read_text())
            # one entry, the URI read from this S3 endpoint
            scope = f"s3 endpoint={s3_server.endpoint_url} profile=default"
            assert list(index) == [f"[{scope}] s3://{s3_bucket}/ref/ref.txt.gz|gunzip"]


def test_a_missing_input_fails_the_execution_as_a_download_and_is_retried(
    conn, start_agent, s3_server, s3_bucket, tmp_path
):
    missing = f"s3://{s3_bucket}/no/such-object.txt"
    (task,) = task_submit(conn, "miss", [{
        "command": "echo never-run", "inputs": [missing], "retries": 1,
        "retry_delay_seconds": 0.1,
    }])  # fmt: skip
    start_agent("-b", "miss", env=_agent_env(s3_server, tmp_path / "cache"))
    wait_for(lambda: _all_done(conn, "miss"), timeout=60)
    rows = conn.execute(
        "SELECT status, failure_class, failure_reason, run_started_at FROM scitq.execution"
        " WHERE task_id = %s ORDER BY id",
        (task["id"],),
    ).fetchall()
    assert len(rows) == 2  # the first attempt and its retry
    for status, failure_class, reason, run_started_at in rows:
        assert (status, failure_class, run_started_at) == ("failed", "download", None)
        assert missing in reason
    assert conn.execute(
        "SELECT status FROM scitq.task WHERE id = %s", (task["id"],)
    ).fetchone() == ("failed",)
    assert conn.execute(
        "SELECT count(*) FROM scitq.execution_output WHERE text LIKE '%%never-run%%'"
    ).fetchone() == (0,)


def test_an_output_that_cannot_be_uploaded_fails_a_successful_command(
    conn, start_agent, s3_server, tmp_path
):
    (task,) = task_submit(conn, "up", [{
        "command": 'echo result > "$OUTPUT/r.txt"', "shell": True,
        "output": "s3://no-such-bucket-for-scitq/out/",
    }])  # fmt: skip
    start_agent("-b", "up", env=_agent_env(s3_server, tmp_path / "cache"))
    wait_for(lambda: _all_done(conn, "up"), timeout=60)
    status, failure_class, reason, return_code = conn.execute(
        "SELECT status, failure_class, failure_reason, return_code FROM scitq.execution"
        " WHERE task_id = %s",
        (task["id"],),
    ).fetchone()
    assert (status, failure_class, return_code) == ("failed", "upload", 0)
    assert "no-such-bucket-for-scitq" in reason


def test_a_prefetched_execution_downloads_while_it_waits_for_a_slot(
    conn, start_agent, s3_server, s3_bucket, tmp_path
):
    s3_server.client().put_object(Bucket=s3_bucket, Key="p.txt", Body=b"p\n")
    first, second = task_submit(conn, "pf", [
        {"command": "sleep 3", "priority": 10},
        {"command": 'cat "$INPUT/p.txt"', "shell": True, "inputs": [f"s3://{s3_bucket}/p.txt"]},
    ])  # fmt: skip
    start_agent("-b", "pf", "-c", "1", "-p", "1", env=_agent_env(s3_server, tmp_path / "c"))
    wait_for(lambda: _all_done(conn, "pf"), timeout=60)
    (first_end,) = conn.execute(
        "SELECT finished_at FROM scitq.execution WHERE task_id = %s", (first["id"],)
    ).fetchone()
    download, run = conn.execute(
        "SELECT download_started_at, run_started_at FROM scitq.execution WHERE task_id = %s",
        (second["id"],),
    ).fetchone()
    assert download < first_end <= run
    assert conn.execute(
        "SELECT status FROM scitq.task WHERE id = %s", (second["id"],)
    ).fetchone() == ("succeeded",)


def test_a_download_past_its_timeout_fails_and_leaves_nothing_partial(
    conn, start_agent, s3_server, s3_bucket, tmp_path
):
    s3_server.client().put_object(Bucket=s3_bucket, Key="big.bin", Body=b"x" * (32 * 2**20))
    (task,) = task_submit(conn, "slow", [{
        "command": "echo never-run", "inputs": [f"s3://{s3_bucket}/big.bin"],
        "download_timeout_seconds": 0.05,
    }])  # fmt: skip
    agent = start_agent("-b", "slow", env=_agent_env(s3_server, tmp_path / "cache"))
    wait_for(lambda: _all_done(conn, "slow"), timeout=60)
    execution, failure_class, reason = conn.execute(
        "SELECT id, failure_class, failure_reason FROM scitq.execution WHERE task_id = %s",
        (task["id"],),
    ).fetchone()
    assert (failure_class, reason) == ("download", "download timeout of 0.05 s exceeded")
    # failed work folders are kept for debugging, but the canceled download left nothing
    inputs = tmp_path / agent.name / f"execution-{execution}" / "input"
    wait_for(lambda: not inputs.exists() or not any(inputs.iterdir()), timeout=30)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://{bucket}/broken.tgz|untar", "broken.tgz"),
        ("http://127.0.0.1:{port}/x.txt", "127.0.0.1"),
    ],
    ids=["corrupted-archive", "unreachable-endpoint"],
)
def test_a_bad_resource_fails_the_execution_with_the_uri_and_the_reason(
    conn, start_agent, s3_server, s3_bucket, unreachable_port, tmp_path, uri, expected
):
    s3_server.client().put_object(Bucket=s3_bucket, Key="broken.tgz", Body=b"not a tarball")
    resource = uri.format(bucket=s3_bucket, port=unreachable_port)
    (task,) = task_submit(conn, "bad", [{"command": "true", "resources": [resource]}])
    start_agent("-b", "bad", env=_agent_env(s3_server, tmp_path / "cache"))
    wait_for(lambda: _all_done(conn, "bad"), timeout=90)
    status, failure_class, reason = conn.execute(
        "SELECT status, failure_class, failure_reason FROM scitq.execution WHERE task_id = %s",
        (task["id"],),
    ).fetchone()
    assert (status, failure_class) == ("failed", "download")
    assert expected in reason
    # nothing half-made was cached as the resource
    cache = tmp_path / "cache"
    assert not (cache / "index.json").exists() or resource not in (cache / "index.json").read_text()
