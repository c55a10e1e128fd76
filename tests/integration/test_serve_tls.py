"""`scitq db serve` over TLS (issue 15, point 6), seen from another machine: a network
namespace on a bridge of this one (`tests.fixtures.netns`), so that connections come
from an address other than the loopback. A real agent process in it runs a task with the URL that
`scitq db create-role` prints (``sslmode=verify-full`` and the CA); clear text from it
is refused, and so is a server the agent cannot verify."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from scitq.db.task import task_get, task_submit
from scitq.embedded.server import EmbeddedServer
from scitq.embedded.tls import ensure_certificates
from tests.fixtures.netns import Host, Topology
from tests.integration.test_cli_db import (
    _free_port,
    _read_until,
    _scitq,
    embedded_env,  # noqa: F401 (a fixture)
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def topology(netns: Callable[[int], Topology]) -> Topology:
    """This host at ``db_address`` and one other machine, ``hosts[0]``."""
    return netns(1)


PROBE = """
import sys, psycopg
try:
    with psycopg.connect(sys.argv[1], connect_timeout=10) as conn:
        user = conn.execute("SELECT session_user").fetchone()[0]
        print("OK", user, conn.pgconn.ssl_in_use)
except psycopg.OperationalError as error:
    print("REFUSED", str(error).replace("\\n", " "))
"""


def _probe(host: Host, url: str) -> str:
    """Connect from the namespace; what happened, in one line."""
    result = subprocess.run(
        host.command(sys.executable, "-c", PROBE, url),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _at(url: str, host: str, **query: str) -> str:
    """``url`` with another host, and query parameters replaced."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[0] + "@" + host + ":" + str(parts.port)
    params = dict(item.split("=", 1) for item in parts.query.split("&") if item)
    params.update(query)
    return urlunsplit(
        parts._replace(netloc=netloc, query="&".join(f"{k}={v}" for k, v in params.items()))
    )


def test_an_agent_on_another_address_works_over_verified_tls_and_clear_text_is_refused(
    embedded_env: dict[str, str],  # noqa: F811
    topology: Topology,
    tmp_path: Path,
) -> None:
    host = topology.hosts[0]
    env = {**embedded_env, "SCITQ_DB_PASSWORD": "serve-secret"}
    assert _scitq(env, "db", "upgrade").returncode == 0
    port = _free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "scitq", "db", "serve", "--listen", "*", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    agent: subprocess.Popen[str] | None = None
    try:
        output = _read_until(serve, "press Ctrl-C", timeout=120)
        assert "sslmode=verify-full" in output and "ca.crt" in output
        created = _scitq(env, "db", "create-role", "--agent", "remote-1", "--json")
        assert created.returncode == 0, created.stderr
        url = json.loads(created.stdout)["database_url"]
        assert "sslmode=verify-full" in url
        ca = Path(urlsplit(url).query.split("sslrootcert=")[1].split("&")[0])
        assert ca.is_file() and "BEGIN CERTIFICATE" in ca.read_text()
        remote_url = _at(url, topology.db_address)  # the database host's name on the bridge

        # verified TLS from the other address
        seen = _probe(host, remote_url)
        assert seen == "OK scitq_worker_remote-1 True", seen
        # clear text from there: refused by the server, whatever the password
        refused = _probe(host, _at(url, topology.db_address, sslmode="disable"))
        assert refused.startswith("REFUSED") and "must use TLS" in refused, refused
        # a server the client cannot verify (another CA): the client refuses it
        other_ca = ensure_certificates(tmp_path / "other", ["localhost"]).ca
        assert other_ca is not None
        unverified = _probe(host, _at(url, topology.db_address, sslrootcert=str(other_ca)))
        assert unverified.startswith("REFUSED") and "SSL error" in unverified, unverified
        # the same server by a name the certificate does not hold: refused by verify-full
        wrong_name = _probe(host, _at(url, "10.255.255.254"))
        assert wrong_name.startswith("REFUSED"), wrong_name
        # from the loopback, clear text stays possible (local tools)
        with psycopg.connect(
            f"host=127.0.0.1 port={port} dbname=scitq user=postgres "
            "password=serve-secret sslmode=disable"
        ) as local:
            assert local.pgconn.ssl_in_use is False

        # a real agent in the namespace runs a task
        local_db = EmbeddedServer(Path(env["SCITQ_DATA_DIR"])).ensure_running()
        with psycopg.connect(local_db, dbname="scitq", autocommit=True) as conn:
            task_id = task_submit(conn, "remote", [{"command": "echo over-tls"}])[0]["id"]
            agent = subprocess.Popen(
                host.command(
                    sys.executable,
                    "-m",
                    "scitq",
                    "agent",
                    "--name",
                    "remote-1",
                    "--batch",
                    "remote",
                    "--work-dir",
                    str(tmp_path / "work"),
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={
                    **env,
                    "SCITQ_DATABASE_URL": remote_url,
                    "SCITQ_DATA_DIR": str(tmp_path / "agent-data"),
                },
            )
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                task = task_get(conn, task_id)
                if task is not None and task["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.5)
            assert task is not None and task["status"] == "succeeded", task
            addresses = conn.execute(
                "SELECT DISTINCT client_addr::text FROM pg_stat_activity "
                "WHERE usename = 'scitq_worker_remote-1'"
            ).fetchall()
            # relayed by the TLS front: the server sees the loopback only
            assert addresses in ([("127.0.0.1/32",)], [("127.0.0.1",)]), addresses
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=60)
            except subprocess.TimeoutExpired:
                agent.kill()
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=120)
        except subprocess.TimeoutExpired:
            serve.kill()
