"""``scitq web create-user``, ``users``, ``delete-user``, and ``scitq web`` serving."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
from werkzeug.security import check_password_hash

from scitq.db.web_user import web_user_get
from tests.cli.conftest import PROJECT_ROOT, Invoke, assert_one_line_error
from tests.fixtures.agents import wait_for


def test_create_user_reads_the_password_from_stdin(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    result = invoke("web", "create-user", "alice", "--role", "admin", input="s3cret-pass\n")
    assert result.exit_code == 0, result.output
    assert "user alice created (role admin)" in result.stdout
    user = web_user_get(conn, "alice")
    assert user is not None and user["role"] == "admin"
    assert user["password_hash"].startswith("scrypt:")
    assert check_password_hash(user["password_hash"], "s3cret-pass")
    result = invoke("web", "create-user", "alice", input="an0ther-pass\n")
    assert "user alice updated (role viewer)" in result.stdout
    result = invoke("web", "users")
    assert "alice" in result.stdout and "viewer" in result.stdout
    assert "scrypt" not in result.stdout
    assert "scrypt" not in invoke("web", "users", "--json").stdout


def test_create_user_refuses_short_passwords_and_bad_roles(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    result = invoke("web", "create-user", "bob", input="short\n")
    assert_one_line_error(result, 2, "at least 8 characters")
    result = invoke("web", "create-user", "bob", "--role", "root", input="long enough\n")
    assert result.exit_code == 2 and "root" in result.stderr
    assert web_user_get(conn, "bob") is None


def test_delete_user(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    invoke("web", "create-user", "carol", input="long enough\n")
    assert invoke("web", "delete-user", "carol").exit_code == 0
    assert web_user_get(conn, "carol") is None
    assert_one_line_error(invoke("web", "delete-user", "carol"), 4, "no dashboard user")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_scitq_web_serves_the_dashboard(db: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env.update(PYTHONPATH=str(PROJECT_ROOT), SCITQ_DATA_DIR=str(tmp_path))
    command = [sys.executable, "-m", "scitq", "--database-url", db, "web", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:

        def login_page() -> bytes | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as r:
                    return bytes(r.read())
            except OSError:
                assert process.poll() is None, process.communicate()
                return None

        page = wait_for(login_page, timeout=30)
        assert b"Log in to scitq" in page
        key = tmp_path / "web-secret-key"
        assert key.exists() and key.stat().st_mode & 0o777 == 0o600
    finally:
        process.terminate()
        process.wait(timeout=10)
