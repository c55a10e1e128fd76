"""The task page in Debian's Chromium (Playwright) against ``scitq web`` and a real agent:
edit a running task's command in the form, see its attempt killed and the new command
run, then rerun the succeeded task with the button, without reloading the page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from scitq.db.task import task_get, task_submit
from scitq.db.web_user import web_user_set
from scitq.web.auth import hash_password
from tests.fixtures.agents import AgentProcess, wait_for
from tests.web.test_browser import PASSWORD, browser, server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _attempts(conn: psycopg.Connection[Any], task_id: int) -> list[tuple[int, str]]:
    rows = conn.execute(
        "SELECT attempt, status FROM scitq.execution WHERE task_id = %s ORDER BY attempt",
        (task_id,),
    )
    return [(int(a), str(s)) for a, s in rows]


def test_edit_and_rerun_in_the_browser(
    browser: Any,  # noqa: F811
    server: str,  # noqa: F811
    conn: psycopg.Connection[Any],
    start_agent: Callable[..., AgentProcess],
) -> None:
    web_user_set(conn, "alice", hash_password(PASSWORD), "admin")
    [row] = task_submit(conn, "ed", [{"command": "sleep 120"}])
    task_id = int(row["id"])
    start_agent("-b", "ed", "--concurrency", "1", name="edit-agent")
    wait_for(lambda: task_get(conn, task_id)["status"] == "running", timeout=60)  # type: ignore[index]

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm
    page.goto(f"{server}/tasks/{task_id}")
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/tasks/{task_id}")
    page.evaluate("window.scitqNoReload = true")

    # the edit form: a new command; the running attempt is killed, the new one runs
    page.click("details.edit summary")
    page.fill("textarea[name=command]", "echo edited")
    page.click("details.edit button[type=submit]")
    page.locator("#flash", has_text="runs again").wait_for(timeout=10_000)
    wait_for(lambda: task_get(conn, task_id)["status"] == "succeeded", timeout=60)  # type: ignore[index]
    assert _attempts(conn, task_id) == [(1, "canceled"), (2, "succeeded")]
    # the summary re-polls until the end: the edit and the Rerun button appear
    page.locator("ul.edits", has_text="by alice").wait_for(timeout=15_000)
    page.get_by_role("button", name="Rerun").click()
    page.locator("#flash", has_text="runs again").last.wait_for(timeout=10_000)
    wait_for(lambda: len(_attempts(conn, task_id)) == 3, timeout=60)
    wait_for(lambda: task_get(conn, task_id)["status"] == "succeeded", timeout=60)  # type: ignore[index]
    page.locator("table.executions tbody tr").nth(2).wait_for(timeout=15_000)
    assert page.evaluate("window.scitqNoReload") is True
