"""Agents staging data from S3: a shared resource downloaded once, inputs and outputs.

Real ``scitq agent`` processes against a moto S3 server process and a PostgreSQL
database (the server and database helpers are control_plane.py's; moto's start is
transfer.py's). Two measurements:

a. 100 tasks share one 100 MB resource (``s3://bench/ref.bin``) on 2 agents with their
   own resource caches: how many times it was downloaded (executions whose bytes_in
   include it), and the wall time from submission to all succeeded.
b. 20 tasks each read a 16 MB input and write a 16 MB output: the agent's staged bytes
   per second (bytes_in + bytes_out over the summed download and upload phases).

    PYTHONPATH=. python bench/staging.py [--database-url URL] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import boto3
import psycopg
from agent import Agents  # run as bench/staging.py
from control_plane import Databases, machine, server, table
from transfer import KEY, REGION, SECRET, free_port, start_moto

from scitq.db.task import task_submit

MB = 10**6


def wait_all_done(conn: psycopg.Connection[tuple[object, ...]], total: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    query = "SELECT count(*) FROM scitq.task WHERE status IN ('succeeded', 'failed', 'canceled')"
    while conn.execute(query).fetchone()[0] < total:  # type: ignore[index]
        if time.monotonic() > deadline:
            raise SystemExit(f"not done after {seconds:.0f} s")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a superuser libpq URL (default: embedded)")
    parser.add_argument("--quick", action="store_true", help="20 MB resource, 20 tasks")
    args = parser.parse_args()
    resource_mb, tasks = (20, 20) if args.quick else (100, 100)
    work = Path(tempfile.mkdtemp(prefix="scitq-staging-bench-"))
    port = free_port()
    moto = start_moto(port, work / "moto.log")
    endpoint = f"http://127.0.0.1:{port}"
    env = {"SCITQ_S3_ENDPOINT_URL": endpoint, "SCITQ_S3_REGION": REGION,
           "SCITQ_S3_ACCESS_KEY_ID": KEY, "SCITQ_S3_SECRET_ACCESS_KEY": SECRET}  # fmt: skip
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                      aws_access_key_id=KEY, aws_secret_access_key=SECRET)  # fmt: skip
    s3.create_bucket(Bucket="bench")
    s3.put_object(Bucket="bench", Key="ref.bin", Body=os.urandom(resource_mb * MB))
    for i in range(20):
        s3.put_object(Bucket="bench", Key=f"in/{i}.bin", Body=os.urandom(16 * MB))
    try:
        with server(args.database_url) as (admin, where):
            print(machine(admin, where), flush=True)
            dbs = Databases(admin)
            try:
                print(shared_resource(dbs, work, env, tasks, resource_mb), flush=True)
                print(inputs_outputs(dbs, work, env), flush=True)
            finally:
                dbs.drop_all()
    finally:
        moto.terminate()
        moto.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _agents(work: Path, env: dict[str, str], name: str) -> Agents:
    runner = Agents(work)
    runner.env = {**runner.env, **env, "SCITQ_RESOURCE_CACHE_DIR": str(work / f"cache-{name}")}
    return runner


def shared_resource(dbs: Databases, work: Path, env: dict[str, str], n: int, mb: int) -> str:
    db = dbs.fresh()
    runners = [_agents(work, env, name) for name in ("a", "b")]
    with psycopg.connect(db, autocommit=True) as conn:
        try:
            for name, runner in zip(("a", "b"), runners, strict=True):
                runner.start(db, f"res-{name}", "res", 4)
            began = time.monotonic()
            task_submit(conn, "res", [
                {"command": "cmp -s $RESOURCE/ref.bin $RESOURCE/ref.bin", "shell": True,
                 "resources": ["s3://bench/ref.bin"]} for _ in range(n)
            ])  # fmt: skip
            wait_all_done(conn, n, 600)
            seconds = time.monotonic() - began
        finally:
            for runner in runners:
                runner.stop()
        succeeded, downloads, bytes_in = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'),"
            " count(*) FILTER (WHERE bytes_in >= %s), coalesce(sum(bytes_in), 0)"
            " FROM scitq.execution",
            (mb * MB,),
        ).fetchone()  # type: ignore[misc]
    rows = [[f"{n}", "2 x 4", f"{mb} MB", f"{succeeded}", f"{downloads}",
             f"{bytes_in / MB:,.0f}", f"{seconds:.1f}"]]  # fmt: skip
    header = ("tasks", "agents", "resource", "succeeded", "downloads", "MB in", "seconds")
    return table("a. tasks sharing one resource (target: one download per agent)", header, rows)


def inputs_outputs(dbs: Databases, work: Path, env: dict[str, str]) -> str:
    db = dbs.fresh()
    runner = _agents(work, env, "io")
    with psycopg.connect(db, autocommit=True) as conn:
        try:
            runner.start(db, "io", "io", 4)
            task_submit(conn, "io", [
                {"command": "cp $INPUT/*.bin $OUTPUT/out.bin", "shell": True,
                 "inputs": [f"s3://bench/in/{i}.bin"], "output": f"s3://bench/out/{i}/"}
                for i in range(20)
            ])  # fmt: skip
            wait_all_done(conn, 20, 600)
        finally:
            runner.stop()
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'), sum(bytes_in), sum(bytes_out),"
            " sum(extract(epoch FROM run_started_at - download_started_at)),"
            " sum(extract(epoch FROM finished_at - upload_started_at))"
            " FROM scitq.execution"
        ).fetchone()
    succeeded, bytes_in, bytes_out, down_s, up_s = row  # type: ignore[misc]
    rows = [["20 x 16 MB", f"{succeeded}", f"{int(bytes_in) / MB / float(down_s):,.0f}",
             f"{int(bytes_out) / MB / float(up_s):,.0f}"]]  # fmt: skip
    header = ("tasks", "succeeded", "download MB/s per task", "upload MB/s per task")
    return table("b. inputs in, outputs out (4 at a time on one agent)", header, rows)


if __name__ == "__main__":
    main()
