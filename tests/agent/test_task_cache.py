"""scitq v1's use_cache with a real agent, real PostgreSQL and a moto S3 server: a task
whose inputs list the same as an earlier success's, and whose output is still in place,
succeeds without running; a changed input, a deleted output or no use_cache runs it."""

from __future__ import annotations

import pytest

from scitq.db.task import task_submit, task_update
from tests.agent.test_staging import _agent_env
from tests.fixtures.agents import wait_for

pytestmark = pytest.mark.slow


def _task(bucket: str, use_cache: bool = True) -> dict:
    return {
        "command": 'cat "$INPUT/in.txt" > "$OUTPUT/result"; echo done > "$OUTPUT/flag"',
        "shell": True,
        "inputs": [f"s3://{bucket}/cache/in.txt"],
        "output": f"s3://{bucket}/cache/out/",
        "use_cache": use_cache,
    }


def _run(conn, bucket: str, **fields) -> tuple:
    (row,) = task_submit(conn, "cached", [{**_task(bucket), **fields}])
    return _ended(conn, row["id"])


def _ended(conn, task_id: int) -> tuple:
    def ended():
        return conn.execute(
            "SELECT t.status, e.id, e.cached_from_execution_id, e.run_started_at IS NOT NULL,"
            " e.input_fingerprint IS NOT NULL, e.output_manifest FROM scitq.task t"
            " JOIN scitq.execution e ON e.task_id = t.id WHERE t.id = %s"
            " AND e.finished_at IS NOT NULL ORDER BY e.attempt DESC LIMIT 1",
            (task_id,),
        ).fetchone()

    return (task_id, *wait_for(ended, timeout=60))


def test_a_cache_hit_reuses_an_output_in_place_and_misses_when_anything_differs(
    conn, start_agent, s3_server, s3_bucket, tmp_path
):
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="cache/in.txt", Body=b"first\n")
    start_agent("-b", "cached", "-c", "2", env=_agent_env(s3_server, tmp_path / "rc"))

    # the first run: it ran, and recorded its listing and the files it left
    first = _run(conn, s3_bucket)
    assert first[1:5] == ("succeeded", first[2], None, True)
    assert first[5] is True and first[6] == {"result": 6, "flag": 5}

    # the same task again: a hit, nothing ran, and the views and explain say so
    hit = _run(conn, s3_bucket)
    assert hit[1:5] == ("succeeded", hit[2], first[2], False)
    overview = conn.execute(
        "SELECT use_cache, cached_from_execution_id FROM scitq.task_overview WHERE task_id = %s",
        (hit[0],),
    ).fetchone()
    assert overview == (True, first[2])
    log = conn.execute(
        "SELECT string_agg(text, '') FROM scitq.execution_output WHERE execution_id = %s",
        (hit[2],),
    ).fetchone()[0]
    assert f"cache hit: the output of execution {first[2]}" in log

    # without use_cache it runs
    plain = _run(conn, s3_bucket, use_cache=False)
    assert plain[3:5] == (None, True)

    # an input that changed (its size and ETag): a miss, it runs
    s3.put_object(Bucket=s3_bucket, Key="cache/in.txt", Body=b"second!\n")
    changed = _run(conn, s3_bucket)
    assert changed[3:5] == (None, True) and changed[6]["result"] == 8

    # the output deleted: a miss, it runs and puts it back
    s3.delete_object(Bucket=s3_bucket, Key="cache/out/result")
    deleted = _run(conn, s3_bucket)
    assert deleted[3:5] == (None, True)
    assert s3.get_object(Bucket=s3_bucket, Key="cache/out/result")["Body"].read() == b"second!\n"

    # an edited task gets the key of its new fields: rerun, it finds the last success
    (row,) = task_submit(conn, "cached", [{**_task(s3_bucket), "command": "true"}])
    assert _ended(conn, row["id"])[4] is True  # its own key: no earlier success, it ran
    task_update(conn, [row["id"]], {"command": _task(s3_bucket)["command"]})
    wait_for(lambda: conn.execute(
        "SELECT attempt_count = 2 AND status = 'succeeded' FROM scitq.task WHERE id = %s",
        (row["id"],),
    ).fetchone()[0], timeout=60)  # fmt: skip
    edited = _ended(conn, row["id"])
    assert edited[3:5] == (deleted[2], False)
