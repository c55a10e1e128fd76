"""Actions are POSTs that change the database through the CLI's functions."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from scitq.db.report import batch_progress
from scitq.db.task import task_get
from scitq.db.worker import worker_list
from tests.cli.conftest import claim, register, run_to_end, submit
from tests.web.conftest import LoggedIn


def _status(conn: psycopg.Connection[Any], task_id: int) -> str:
    row = task_get(conn, task_id)
    return "deleted" if row is None else str(row["status"])


def _batch(conn: psycopg.Connection[Any], name: str) -> dict[str, Any] | None:
    rows = batch_progress(conn, name)
    return rows[0] if rows else None


def test_actions_are_post_only(admin: LoggedIn, conn: psycopg.Connection[Any]) -> None:
    submit(conn, "b1", {"command": "true"})
    for path in ("/batches/b1/pause", "/tasks/1/cancel", "/workers/1/set"):
        assert admin.get(path).status_code == 405
    assert admin.post("/batches/b1/explode").status_code == 404


def test_batch_pause_resume_cancel_retry_delete(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    ids = submit(conn, "b1", {"command": "true"}, {"command": "true"})
    response = admin.post("/batches/b1/pause")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<tr id="batch-') and "Resume" in body
    assert 'id="flash" hx-swap-oob="true"' in body and "batch b1 paused" in body
    assert _batch(conn, "b1")["is_paused"] is True  # type: ignore[index]
    admin.post("/batches/b1/resume")
    assert _batch(conn, "b1")["is_paused"] is False  # type: ignore[index]
    body = admin.post("/batches/b1/cancel").get_data(as_text=True)
    assert "batch b1 canceled (2 tasks)" in body
    assert [_status(conn, i) for i in ids] == ["canceled", "canceled"]
    admin.post("/batches/b1/retry")
    assert [_status(conn, i) for i in ids] == ["pending", "pending"]
    response = admin.client.post(
        "/batches/b1/delete",
        headers={"X-CSRF-Token": admin.token, "HX-Request": "true", "HX-Target": "batch-1"},
    )
    assert response.status_code == 200
    assert "batch b1 deleted" in response.get_data(as_text=True)
    assert _batch(conn, "b1") is None


def test_plain_form_posts_redirect_with_a_message(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    submit(conn, "b1", {"command": "true"})
    response = admin.post("/batches/b1/pause", htmx=False)
    assert response.status_code == 303
    assert "batch b1 paused" in admin.get("/batches/").get_data(as_text=True)


def test_refused_actions_say_why_and_change_nothing(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    response = admin.post("/batches/nope/pause")
    assert response.status_code == 200
    assert response.headers["HX-Reswap"] == "none"
    assert "batch &#39;nope&#39; does not exist" in response.get_data(as_text=True)
    [task_id] = submit(conn, "b1", {"command": "true"})
    response = admin.post(f"/tasks/{task_id}/resume")  # pending: nothing to resume
    assert response.headers["HX-Reswap"] == "none"
    assert "nothing to resume" in response.get_data(as_text=True)
    assert _status(conn, task_id) == "pending"


def test_task_pause_resume_cancel_retry_delete(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    [task_id] = submit(conn, "b1", {"command": "true"})
    body = admin.post(f"/tasks/{task_id}/pause").get_data(as_text=True)
    assert body.lstrip().startswith('<div id="summary"') and f"task {task_id} paused" in body
    assert _status(conn, task_id) == "paused"
    admin.post(f"/tasks/{task_id}/resume")
    assert _status(conn, task_id) == "pending"
    admin.post(f"/tasks/{task_id}/cancel")
    assert _status(conn, task_id) == "canceled"
    admin.post(f"/tasks/{task_id}/retry")
    assert _status(conn, task_id) == "pending"
    response = admin.post(f"/tasks/{task_id}/delete")
    assert response.headers["HX-Redirect"] == "/tasks/"
    assert _status(conn, task_id) == "deleted"


def test_retry_a_failed_task(admin: LoggedIn, conn: psycopg.Connection[Any]) -> None:
    [task_id] = submit(conn, "b1", {"command": "false"})
    worker = register(conn)
    [claimed] = claim(conn, worker)
    run_to_end(conn, worker, claimed["execution_id"], return_code=1)
    assert _status(conn, task_id) == "failed"
    admin.post(f"/tasks/{task_id}/retry")
    assert _status(conn, task_id) == "pending"


def _worker(conn: psycopg.Connection[Any], worker_id: int) -> dict[str, Any] | None:
    return next((w for w in worker_list(conn) if w["worker_id"] == worker_id), None)


def test_worker_edits_pause_drain_delete(admin: LoggedIn, conn: psycopg.Connection[Any]) -> None:
    worker = register(conn, "w1")
    body = admin.post(f"/workers/{worker}/set", data={"concurrency": "4", "prefetch": "2"})
    text = body.get_data(as_text=True)
    assert text.lstrip().startswith(f'<tr id="worker-{worker}"')
    assert "concurrency 4, prefetch 2" in text
    row = _worker(conn, worker)
    assert row is not None and (row["concurrency"], row["prefetch"]) == (4, 2)
    admin.post(f"/workers/{worker}/set", data={"concurrency": "3", "prefetch": ""})
    row = _worker(conn, worker)
    assert row is not None and (row["concurrency"], row["prefetch"]) == (3, 2)
    for action, field, value in [("pause", "is_paused", True), ("resume", "is_paused", False),
                                 ("drain", "is_draining", True),
                                 ("undrain", "is_draining", False)]:  # fmt: skip
        admin.post(f"/workers/{worker}/{action}")
        row = _worker(conn, worker)
        assert row is not None and row[field] is value, action
    text = admin.post(f"/workers/{worker}/delete").get_data(as_text=True)
    assert "worker w1 deleted" in text
    assert _worker(conn, worker) is None


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"concurrency": "-1"}, "concurrency must be a whole number"),
        ({"concurrency": "1e9"}, "concurrency must be a whole number"),
        ({"prefetch": "20000"}, "prefetch must be a whole number from 0 to 10000"),
        ({}, "nothing to change"),
    ],
)
def test_bad_worker_edits_say_what_is_wrong(
    admin: LoggedIn, conn: psycopg.Connection[Any], form: dict[str, str], message: str
) -> None:
    worker = register(conn, "w1", concurrency=2)
    response = admin.post(f"/workers/{worker}/set", data=form)
    assert response.headers["HX-Reswap"] == "none"
    assert message in response.get_data(as_text=True)
    row = _worker(conn, worker)
    assert row is not None and row["concurrency"] == 2


def test_unknown_worker(admin: LoggedIn) -> None:
    response = admin.post("/workers/424242/pause")
    assert "does not exist" in response.get_data(as_text=True)


def test_actions_are_logged_with_the_user(
    admin: LoggedIn, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    submit(conn, "b1", {"command": "true"})
    with caplog.at_level("INFO", logger="scitq.web.actions"):
        admin.post("/batches/b1/pause")
        admin.post("/batches/nope/pause")  # refused: not logged as done
    records = [r for r in caplog.records if r.name == "scitq.web.actions"]
    assert [(r.user, r.action, r.target) for r in records] == [("alice", "pause", "batch b1")]  # type: ignore[attr-defined]
