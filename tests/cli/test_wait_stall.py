"""A wait that cannot end says why, and gives up when no worker can serve the batch."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from scitq.cli import scitq
from scitq.client import Client
from scitq.db.worker import worker_update
from scitq.errors import WaitStalled, WaitTimeout
from tests.cli.conftest import register, submit

pytestmark = pytest.mark.sql


def test_batch_wait_explains_then_gives_up_without_a_worker(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    submit(conn, "lonely", {"command": "true"})
    args = ["batch", "wait", "lonely", "-q", "--explain-after", "0.3", "--give-up-after", "1"]
    result = CliRunner().invoke(scitq, ["--database-url", db, *args])
    assert result.exit_code == 9, result.output
    lines = result.stderr.splitlines()
    why = "no worker serves batch 'lonely'; start one with `scitq agent --batch lonely`"
    assert lines[0].startswith("batch 'lonely': nothing ran for ") and lines[0].endswith(why)
    assert lines[-1].startswith("scitq: error: batch 'lonely': nothing ran for ")
    assert lines[-1].endswith(f"{why}; gave up waiting")
    assert "Traceback" not in result.output


def test_client_wait_says_why_and_waits_on_for_a_paused_worker(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    submit(conn, "held", {"command": "true"})
    worker = register(conn, "w1", batches=["held"])
    worker_update(conn, worker, is_paused=True)
    said: list[str] = []
    with Client(db) as client, pytest.raises(WaitTimeout) as raised:
        client.wait("held", timeout=2.5, explain_after=0.3, unserved_timeout=0.5,
                    on_stall=said.append)  # fmt: skip
    # a paused worker may be resumed: the wait explains, and does not give up
    assert not isinstance(raised.value, WaitStalled)
    assert said, "the wait said nothing"
    assert said[0].startswith("batch 'held': nothing ran for ")
    assert said[0].endswith("every worker serving batch 'held' is busy: w1 is paused")
    assert len(said) == 1  # the same reason is not repeated at every poll


def test_client_wait_gives_up_when_the_only_worker_is_gone(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    submit(conn, "orphan", {"command": "true"})
    conn.execute(
        "INSERT INTO scitq.worker (name, login_role, batches, status, last_heartbeat_at) "
        "VALUES ('gone', current_user, '{orphan}', 'online', now() - interval '1 hour')"
    )
    with Client(db) as client, pytest.raises(WaitStalled, match="no live worker serves"):
        client.wait("orphan", explain_after=0.2, unserved_timeout=0.5, on_stall=lambda _: None)
