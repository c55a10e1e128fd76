"""The task page's edit form and rerun button (POSTs with CSRF, htmx fragments), and what
it shows of edits and cache hits; viewers may not edit."""

from __future__ import annotations

from typing import Any

import psycopg

from scitq.db.task import task_get
from tests.cli.conftest import claim, register, run_to_end, submit
from tests.web.conftest import LoggedIn

FORM = {"command": "echo new", "name": "n", "container": "", "container_options": "",
        "inputs": "", "resources": "", "output": "", "retries": "2",
        "download_timeout_seconds": "", "run_timeout_seconds": "", "rerun": "auto"}  # fmt: skip


def test_the_edit_form_changes_the_task_and_the_page_lists_the_edit(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    (task,) = submit(conn, "e", {"command": "true", "name": "n"})
    page = admin.get(f"/tasks/{task}").get_data(as_text=True)
    assert 'id="edit"' in page and 'name="csrf_token"' in page
    response = admin.post(f"/tasks/{task}/edit", data=FORM)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="summary"') and f"task {task} updated" in body
    assert "by alice" in body and '<code>command</code> "true" &rarr; "echo new"' in body
    assert "<code>name</code>" not in body  # unchanged: not an edit
    row = task_get(conn, task)
    assert row is not None and (row["command"], row["retries"]) == ("echo new", 2)
    # a bad value: one message, nothing changed
    body = admin.post(f"/tasks/{task}/edit", data={**FORM, "retries": "many"}).get_data(
        as_text=True
    )
    assert "retries must be a number" in body
    # without the CSRF token: refused before the view
    bare = admin.client.post(f"/tasks/{task}/edit", data=FORM)
    assert bare.status_code == 400


def test_rerun_button_and_cache_hit_badge(admin: LoggedIn, conn: psycopg.Connection[Any]) -> None:
    (task,) = submit(conn, "e", {"command": "true"})
    worker = register(conn, batches=["e"])
    execution = claim(conn, worker)[0]["execution_id"]
    run_to_end(conn, worker, execution)
    page = admin.get(f"/tasks/{task}").get_data(as_text=True)
    assert ">Rerun</button>" in page and ">Retry</button>" not in page
    body = admin.post(f"/tasks/{task}/rerun").get_data(as_text=True)
    assert f"task {task} runs again" in body
    assert task_get(conn, task)["status"] == "pending"  # type: ignore[index]
    # a cache hit as the views record it (the agent side is tests/agent/test_task_cache.py)
    (other,) = submit(conn, "f", {"command": "true", "use_cache": True})
    second_worker = register(conn, "w2", batches=["f"])
    hit = claim(conn, second_worker)[0]["execution_id"]
    conn.execute(
        "UPDATE scitq.execution SET cached_from_execution_id = %s WHERE id = %s", (execution, hit)
    )
    run_to_end(conn, second_worker, hit)
    page = admin.get(f"/tasks/{other}").get_data(as_text=True)
    assert "cache hit</span>" in page and "the last attempt was a cache hit" in page


def test_viewers_cannot_edit_or_rerun(viewer: LoggedIn, conn: psycopg.Connection[Any]) -> None:
    (task,) = submit(conn, "e", {"command": "true"})
    page = viewer.get(f"/tasks/{task}").get_data(as_text=True)
    assert 'id="edit"' not in page
    assert viewer.post(f"/tasks/{task}/edit", data=FORM).status_code == 403
    assert viewer.post(f"/tasks/{task}/rerun").status_code == 403
