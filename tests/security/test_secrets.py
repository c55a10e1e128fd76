"""Credentials never show: not in task rows, executions, output, scheduler decisions,
agent or scheduler logs, nor dashboard pages. Real agent and scheduler processes run
with a database password, an S3 secret key and an FTP password in their environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from scitq.db.task import task_submit
from scitq.db.web_user import web_user_set
from scitq.web import db as web_db
from scitq.web.auth import hash_password
from tests.cli.conftest import PROJECT_ROOT
from tests.fixtures.agents import wait_for
from tests.web.conftest import PASSWORD, log_in, make_app

pytestmark = [pytest.mark.sql, pytest.mark.slow]


def _all_rows_text(conn: psycopg.Connection[Any]) -> str:
    tables = [
        name
        for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'scitq' ORDER BY 1"
        )
    ]
    return "\n".join(
        str(row[0])
        for table in tables
        for row in conn.execute(f"SELECT t::text FROM scitq.{table} t")
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env.update(PYTHONPATH=str(PROJECT_ROOT), PYTHONUNBUFFERED="1", **extra)
    return env


def test_credentials_never_show(
    db: str, conn: psycopg.Connection[Any], make_role: Any, s3_auth_server: Any, tmp_path: Path
) -> None:
    agent_password = f"agentpw-{uuid.uuid4().hex}"
    admin_password = f"adminpw-{uuid.uuid4().hex}"
    s3_secret = f"s3secret-{uuid.uuid4().hex}"
    ftp_password = f"ftppw-{uuid.uuid4().hex}"
    secrets = [agent_password, admin_password, s3_secret, ftp_password]
    _, agent_dsn = make_role("scitq_agent", password=agent_password)
    _, admin_dsn = make_role("scitq_admin", password=admin_password)
    transfer_env = {
        "SCITQ_S3_ENDPOINT_URL": s3_auth_server.endpoint_url,
        "SCITQ_S3_REGION": "us-east-1",
        "SCITQ_S3_ACCESS_KEY_ID": "AKIDSCITQTEST",
        "SCITQ_S3_SECRET_ACCESS_KEY": s3_secret,
        "SCITQ_FTP_PASSWORD": ftp_password,
    }
    task_submit(
        conn,
        "secrets",
        [
            {"command": "env; echo args: $0 $@", "shell": True, "name": "env"},
            {"command": "true", "name": "s3", "inputs": ["s3://bucket/in.fq"]},
            {"command": "sleep 30", "name": "lost", "retries": 0},
            # the agent's own environment and command line, as a task of the same user
            # can read them (issue 15.5): the agent scrubs its credentials at start
            {
                "command": "tr '\\0' '\\n' < /proc/$PPID/environ; "
                "tr '\\0' ' ' < /proc/$PPID/cmdline",
                "shell": True,
                "name": "parent",
            },
        ],
    )
    # the agent gets its database URL (with the password) from the environment
    agent_log = tmp_path / "agent.log"
    with agent_log.open("wb") as log:
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scitq",
                "-v",
                "agent",
                "-b",
                "secrets",
                "-c",
                "3",
                "--name",
                "secret-agent",
                "--work-dir",
                str(tmp_path / "work"),
                "--lease",
                "2",
                "--heartbeat",
                "0.5",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=_env(SCITQ_DATABASE_URL=agent_dsn, **transfer_env),
        )
        try:

            def ended(name: str) -> bool:
                row = conn.execute(
                    "SELECT status FROM scitq.task WHERE name = %s", (name,)
                ).fetchone()
                return row is not None and row[0] in ("succeeded", "failed")

            wait_for(lambda: ended("env") and ended("s3") and ended("parent"), timeout=90)
            wait_for(
                lambda: (
                    conn.execute(
                        "SELECT count(*) FROM scitq.execution e JOIN scitq.task t "
                        "ON t.id = e.task_id WHERE t.name = 'lost' AND e.status = 'running'"
                    ).fetchone()
                    == (1,)
                ),
                timeout=30,
            )
            os.killpg(agent.pid, signal.SIGKILL)  # its execution is lost: a scheduler decision
            agent.wait(timeout=10)
        finally:
            if agent.poll() is None:
                os.killpg(agent.pid, signal.SIGKILL)
                agent.wait(timeout=10)
    # a scheduler logs in as an admin role with a password, and records the loss
    scheduler_log = tmp_path / "scheduler.log"
    with scheduler_log.open("wb") as log:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "scitq", "-v", "scheduler", "--interval", "0.5"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=_env(SCITQ_DATABASE_URL=admin_dsn, **transfer_env),
        )
        try:
            wait_for(
                lambda: (
                    conn.execute(
                        "SELECT count(*) FROM scitq.scheduler_decision WHERE duty = 'expire_leases'"
                    ).fetchone()[0]  # type: ignore[index]
                    >= 1
                ),
                timeout=60,
            )
        finally:
            scheduler.send_signal(signal.SIGTERM)
            try:
                scheduler.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(scheduler.pid, signal.SIGKILL)
                scheduler.wait(timeout=10)

    # the tasks ran and failed as expected, so the paths that could leak were taken
    statuses = dict(conn.execute("SELECT name, status FROM scitq.task").fetchall())
    # the lost execution spent no retry: the task waits to be claimed again (issue 15.1)
    assert statuses == {
        "env": "succeeded",
        "s3": "failed",
        "lost": "pending",
        "parent": "succeeded",
    }
    reason = conn.execute(
        "SELECT e.failure_reason FROM scitq.execution e JOIN scitq.task t ON t.id = e.task_id "
        "WHERE t.name = 's3'"
    ).fetchone()
    assert reason and "s3://bucket/in.fq" in reason[0]
    output = "".join(t for (t,) in conn.execute("SELECT text FROM scitq.task_log"))
    assert "PATH=" in output  # the env task really printed its environment
    # the parent task really read the agent's environment and command line
    assert "PYTHONUNBUFFERED=1" in output and "secret-agent" in output

    texts = {
        "database rows": _all_rows_text(conn),
        "agent log": agent_log.read_text(errors="replace"),
        "scheduler log": scheduler_log.read_text(errors="replace"),
    }
    # the dashboard, logged in over a database URL that holds the admin password
    web_user_set(conn, "alice", hash_password(PASSWORD), "admin")
    app = make_app(admin_dsn)
    try:
        user = log_in(app.test_client(), "alice")
        task_ids = [i for (i,) in conn.execute("SELECT id FROM scitq.task")]
        pages = ["/", "/tasks/", "/batches/", "/workers/", "/cloud/", "/tasks/?batch=secrets"]
        for task_id in task_ids:
            pages += [f"/tasks/{task_id}", f"/tasks/{task_id}/output.txt"]
        for page in pages:
            response = user.get(page)
            assert response.status_code == 200, page
            texts[f"page {page}"] = response.get_data(as_text=True)
    finally:
        web_db.close(app)

    found = {where: [s for s in secrets if s in text] for where, text in texts.items()}
    assert {where: hits for where, hits in found.items() if hits} == {}
    assert make_conninfo(agent_dsn)  # (the DSNs did carry the passwords)
    assert agent_password in agent_dsn and admin_password in admin_dsn
