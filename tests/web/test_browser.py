"""End to end in Debian's Chromium driven by Playwright, against ``scitq web`` and a real
agent: log in, watch a running task's log grow without reloading, pause a batch, edit a
worker's concurrency and see the agent apply it; a screenshot of the overview.

Playwright cannot download its own browser here: it drives the ``chromium`` package
(``.ci/apt-packages.txt``). Without it (or without the ``playwright`` module) the test
is skipped locally and fails under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scitq.db.batch import batch_cancel
from scitq.db.report import batch_progress
from scitq.db.task import task_get, task_submit
from scitq.db.web_user import web_user_set
from scitq.db.worker import worker_list
from scitq.web.auth import hash_password
from tests.cli.conftest import PROJECT_ROOT
from tests.fixtures.agents import AgentProcess, wait_for, worker_id

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PASSWORD = "browser-test-pass"
#: The Debian package's binary (Playwright's own build is not reachable here).
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright module is not installed (pip install playwright)")
    executable = next((path for path in CHROMIUM_PATHS if os.access(path, os.X_OK)), None)
    if executable is None:
        unavailable("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where Chromium refuses its sandbox
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(db: str, tmp_path: Path) -> Iterator[str]:
    """``scitq web`` on a free port; yields its base URL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env.update(PYTHONPATH=str(PROJECT_ROOT), SCITQ_DATA_DIR=str(tmp_path / "web"))
    log = (tmp_path / "web.log").open("wb")
    command = [sys.executable, "-m", "scitq", "--database-url", db, "web", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def listening() -> bool:
        assert process.poll() is None, (tmp_path / "web.log").read_text()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, timeout=30)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _running_on(conn: psycopg.Connection[Any], name: str) -> int:
    worker = next((w for w in worker_list(conn) if w["name"] == name), None)
    return 0 if worker is None else int(worker["running"])


def test_browser_end_to_end(
    browser: Any,
    server: str,
    conn: psycopg.Connection[Any],
    start_agent: Callable[..., AgentProcess],
    tmp_path: Path,
) -> None:
    web_user_set(conn, "alice", hash_password(PASSWORD), "admin")
    agent = start_agent("--concurrency", "1", name="e2e-agent")
    wait_for(lambda: worker_id(conn, agent.name), timeout=60)
    # a finished batch first, for the overview's progress bars and throughput chart
    quick = [{"command": "true", "name": f"ok-{i}"} for i in range(9)]
    quick += [{"command": "exit 3", "shell": True, "name": f"bad-{i}"} for i in range(3)]
    task_submit(conn, "quick", quick)
    wait_for(lambda: batch_progress(conn, "quick")[0]["remaining"] == 0, timeout=60)
    script = 'for i in $(seq 1 80); do echo "line $i"; sleep 0.5; done'
    [log_task] = task_submit(conn, "live", [{"command": script, "shell": True}])
    task_id = int(log_task["id"])
    wait_for(lambda: task_get(conn, task_id)["status"] == "running", timeout=60)  # type: ignore[index]

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    # log in
    page.goto(f"{server}/tasks/{task_id}")
    assert "/login" in page.url
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/tasks/{task_id}")

    # the log grows without a reload: a mark left on the window survives
    page.evaluate("window.scitqNoReload = true")
    # (polled from here: wait_for_function evaluates strings, which the page's CSP forbids)
    wait_for(lambda: "line 3" in page.inner_text("#log-text"), timeout=30)
    before = page.inner_text("#log-text").count("line ")
    wait_for(lambda: page.inner_text("#log-text").count("line ") >= before + 4, timeout=30)
    assert page.evaluate("window.scitqNoReload") is True
    if os.environ.get("TEST_SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(os.environ["TEST_SCREENSHOT_DIR"]) / "task.png"))
    assert page.inner_text("#task-status") == "running"

    # pause the batch from the batches page (its row re-polls while tasks remain)
    page.goto(f"{server}/batches/")
    row = page.locator("tr.batch", has_text="live")
    row.get_by_role("button", name="Pause").click()
    row.get_by_role("button", name="Resume").wait_for(timeout=10_000)
    assert batch_progress(conn, "live")[0]["is_paused"] is True
    assert "batch live paused" in page.inner_text("#flash")

    # raise the worker's concurrency inline; the agent applies it and runs three tasks
    task_submit(conn, "par", [{"command": "sleep 60"} for _ in range(3)])
    page.goto(f"{server}/workers/")
    worker_row = page.locator("tr", has_text=agent.name)
    worker_row.locator("input[name=concurrency]").fill("3")
    worker_row.get_by_role("button", name="Save").click()
    page.locator("#flash", has_text="concurrency 3").wait_for(timeout=10_000)
    wait_for(lambda: _running_on(conn, agent.name) == 3, timeout=60)
    # the row's live cell shows it without a reload
    page.locator(f"tr:has-text('{agent.name}') .load[data-running='3']").wait_for(timeout=15_000)
    # the host cell: the metrics the agent's heartbeats carry, drawn as an inline SVG chart
    page.reload()
    host = page.locator(f"tr:has-text('{agent.name}') td.host-cell")
    host.locator("svg.spark").wait_for(timeout=15_000)
    assert host.locator("polyline.cpu").count() == 1
    figures = host.locator(".figures").inner_text()
    assert "load " in figures and "free of" in figures and "net in" in figures

    # a screenshot of the overview
    page.goto(f"{server}/")
    page.locator("figure.chart svg").wait_for()
    shot = tmp_path / "overview.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("TEST_SCREENSHOT_DIR"):  # to refresh docs/img/overview.png
        shutil.copy(shot, Path(os.environ["TEST_SCREENSHOT_DIR"]) / "overview.png")

    # end the sleeps now rather than at the agent's shutdown grace
    batch_cancel(conn, "par")
    batch_cancel(conn, "live")
