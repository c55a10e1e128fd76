"""Every page as a full page and as the htmx fragment, with real rows behind them."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from scitq.db.execution import (
    execution_append_output,
    execution_expire_leases,
    execution_finish,
    execution_set_phase,
)
from scitq.db.task import task_cancel
from tests.cli.conftest import claim, register, run_to_end, submit
from tests.web.conftest import LoggedIn

XSS = "<script>alert(1)</script>"


def _finished_task(conn: psycopg.Connection[Any], batch: str = "b1", **fields: Any) -> int:
    [task_id] = submit(conn, batch, {"command": "echo hi", **fields})
    worker = register(conn, f"w-{task_id}")
    [claimed] = claim(conn, worker)
    run_to_end(conn, worker, claimed["execution_id"], [("stdout", "hello\n")])
    return task_id


def test_overview_full_page_and_fragment(admin: LoggedIn, conn: psycopg.Connection[Any]) -> None:
    _finished_task(conn)
    submit(conn, "b1", {"command": "false"}, {"command": "true"})
    page = admin.get("/").get_data(as_text=True)
    assert "<html" in page and "htmx-2.0.11.min.js" in page
    assert 'id="live"' in page and "<svg" in page
    assert "1 succeeded, 0 failed" in page  # the throughput chart's caption
    assert re.search(r'<td class="num">3</td>', page)  # total of b1
    fragment = admin.get("/", htmx=True).get_data(as_text=True)
    assert "<html" not in fragment
    assert fragment.lstrip().startswith('<div id="live"')
    assert 'hx-trigger="every 5s"' in fragment
    assert "w-1" in fragment  # the worker and its load


def test_batch_rows_poll_until_the_batch_is_done(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    _finished_task(conn, "done")
    submit(conn, "busy", {"command": "true"})
    page = admin.get("/batches/").get_data(as_text=True)
    busy_row = re.search(r'<tr id="batch-\d+" class="batch"\s*(hx-get="/batches/busy/row")', page)
    assert busy_row, page
    assert "/batches/done/row" not in page  # nothing left to follow
    row = admin.get("/batches/busy/row", htmx=True).get_data(as_text=True)
    assert row.lstrip().startswith('<tr id="batch-') and "<html" not in row
    assert admin.get("/batches/gone/row", htmx=True).get_data(as_text=True) == ""
    fragment = admin.get("/batches/", htmx=True).get_data(as_text=True)
    assert fragment.lstrip().startswith('<table class="batches">')


def test_task_names_commands_and_output_are_escaped(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    batch = '<b onclick="alert(1)">b'  # no "/" in batch names
    [task_id] = submit(conn, batch, {"command": f"echo '{XSS}'", "name": XSS})
    worker = register(conn, "w1")
    [claimed] = claim(conn, worker)
    run_to_end(conn, worker, claimed["execution_id"], [("stdout", XSS + "\n")])
    for path in ("/tasks/", f"/tasks/{task_id}", f"/tasks/?name={XSS}"):
        body = admin.get(path).get_data(as_text=True)
        assert XSS not in body, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body, path
    for path in ("/", "/batches/", "/tasks/", f"/tasks/{task_id}"):
        body = admin.get(path).get_data(as_text=True)
        assert batch not in body, path
        assert "&lt;b onclick=&#34;alert(1)&#34;&gt;b" in body, path


def test_task_list_filters_and_keyset_pages(admin: LoggedIn, conn: psycopg.Connection[Any]) -> None:
    ids = submit(conn, "big", *({"command": "true", "name": f"t{i:03d}"} for i in range(120)))
    submit(conn, "other", {"command": "true", "name": "lonely"})
    page = admin.get("/tasks/?batch=big").get_data(as_text=True)
    shown = [int(x) for x in re.findall(r'<tr id="task-(\d+)"', page)]
    assert shown == ids[:50]
    assert f"after={ids[49]}" in page
    second = admin.get(f"/tasks/?batch=big&after={ids[49]}", htmx=True).get_data(as_text=True)
    assert "<html" not in second
    assert [int(x) for x in re.findall(r'<tr id="task-(\d+)"', second)] == ids[50:100]
    assert "First page" in second
    third = admin.get(f"/tasks/?batch=big&after={ids[99]}").get_data(as_text=True)
    assert len(re.findall(r'<tr id="task-', third)) == 20
    assert "Next page" not in third
    named = admin.get("/tasks/?name=lone").get_data(as_text=True)
    assert re.findall(r'<tr id="task-(\d+)"', named) == [str(ids[-1] + 1)]
    # with % or _ the name is a pattern as typed: t100 and t110 only
    pattern = admin.get("/tasks/?name=t1_0").get_data(as_text=True)
    assert len(re.findall(r'<tr id="task-', pattern)) == 2
    task_cancel(conn, ids[:3])
    canceled = admin.get("/tasks/?status=canceled").get_data(as_text=True)
    assert [int(x) for x in re.findall(r'<tr id="task-(\d+)"', canceled)] == ids[:3]


def test_a_name_search_goes_window_by_window(
    admin: LoggedIn, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("scitq.db.task.PAGE_SCAN_BUDGET", 10)
    monkeypatch.setattr("scitq.db.task.NAME_SCAN_BUDGET", 50)
    ids = submit(conn, "b1", *({"command": "true", "name": f"t{i}"} for i in range(120)))
    submit(conn, "b1", {"command": "true", "name": "needle"})
    page = admin.get("/tasks/?name=needle").get_data(as_text=True)
    assert '<tr id="task-' not in page
    assert f"searched up to task {ids[49]}" in page
    assert f"after={ids[49]}" in page and "Search further" in page
    page = admin.get(f"/tasks/?name=needle&after={ids[99]}").get_data(as_text=True)
    assert re.findall(r'<tr id="task-(\d+)"', page) == [str(ids[-1] + 1)]
    assert "searched-to" not in page and "Search further" not in page
    # within a batch the name index does the work: no window
    page = admin.get("/tasks/?name=needle&batch=b1").get_data(as_text=True)
    assert re.findall(r'<tr id="task-(\d+)"', page) == [str(ids[-1] + 1)]


def test_task_list_by_worker(admin: LoggedIn, conn: psycopg.Connection[Any]) -> None:
    task_id = _finished_task(conn)
    submit(conn, "b1", {"command": "true"})
    page = admin.get(f"/tasks/?worker=w-{task_id}").get_data(as_text=True)
    assert re.findall(r'<tr id="task-(\d+)"', page) == [str(task_id)]


@pytest.mark.parametrize(
    ("query", "message"),
    [("batch=nope", "batch &#39;nope&#39; does not exist"), ("after=x1", "after must be a whole")],
)
def test_task_list_bad_filters_say_what_is_wrong(
    admin: LoggedIn, conn: psycopg.Connection[Any], query: str, message: str
) -> None:
    response = admin.get(f"/tasks/?{query}")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_task_detail_shows_every_attempt_resources_and_why_it_waits(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    [task_id] = submit(conn, "b1", {"command": "false", "retries": 1, "retry_delay_seconds": 0})
    worker = register(conn, "w1")
    [first] = claim(conn, worker)
    run_to_end(conn, worker, first["execution_id"], [("stderr", "boom\n")], return_code=1,
               wall_seconds=2.5, peak_rss_bytes=3 * 2**20)  # fmt: skip
    page = admin.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert "Why:</strong> it is runnable and should be claimed soon: free slots on w1" in page
    assert "3.0 MiB" in page and "2.5 s" in page
    [second] = claim(conn, worker, later=True)
    run_to_end(conn, worker, second["execution_id"], [("stdout", "fine\n")])
    page = admin.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert len(re.findall(r'#log">\d</a>', page)) == 2  # both attempts
    assert "fine" in page and "boom" not in page  # the last attempt's output
    first_page = admin.get(f"/tasks/{task_id}?attempt=1").get_data(as_text=True)
    assert "boom" in first_page
    # the summary fragment stops polling once the task has ended
    summary = admin.get(f"/tasks/{task_id}", htmx=True).get_data(as_text=True)
    assert summary.lstrip().startswith('<div id="summary"') and "hx-trigger" not in summary[:200]


def test_task_page_tells_attempts_used_from_free_requeues(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    [task_id] = submit(conn, "b1", {"command": "true", "retries": 0})
    worker = register(conn, "w1")
    claim(conn, worker)
    later = conn.execute("SELECT now() + interval '1 day'").fetchone()[0]
    [lost] = execution_expire_leases(conn, now=later)  # its worker went silent
    assert lost["task_id"] == task_id
    page = admin.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert "1 attempt(s): 0 counted against 0 retries allowed" in page
    assert "1 of 3 free requeue(s) used" in page


def test_pending_task_summary_polls_and_explains(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    [task_id] = submit(conn, "lonely", {"command": "true"})
    summary = admin.get(f"/tasks/{task_id}", htmx=True).get_data(as_text=True)
    assert 'hx-trigger="load delay:2s"' in summary
    assert "no worker serves batch" in summary
    assert admin.get("/tasks/999999").status_code == 404


def test_log_follows_a_live_attempt_and_pages_back(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    [task_id] = submit(conn, "b1", {"command": "sleep 100"})
    worker = register(conn, "w1")
    [claimed] = claim(conn, worker)
    execution_id = claimed["execution_id"]
    execution_set_phase(conn, worker, execution_id, "running")
    # 300 chunks of 4 KiB: more than one page of log (64 chunks, 256 KiB)
    chunks = [(execution_id, seq, "stdout", f"line {seq:04d} " + "x" * 4000 + "\n")
              for seq in range(300)]  # fmt: skip
    execution_append_output(conn, worker, chunks)
    page = admin.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert "line 0299" in page and "line 0236" in page and "line 0235" not in page
    assert f'execution={execution_id}&amp;before=236"' in page  # the "earlier" button
    assert f'execution={execution_id}&amp;after=299"' in page  # the follower
    earlier = admin.get(
        f"/tasks/{task_id}/log/earlier?execution={execution_id}&before=236", htmx=True
    ).get_data(as_text=True)
    assert "line 0235" in earlier and "line 0172" in earlier and "line 0171" not in earlier
    assert "before=172" in earlier
    download = admin.get(f"/tasks/{task_id}/output.txt")
    assert download.status_code == 200 and download.mimetype == "text/plain"
    assert "attachment" in download.headers["Content-Disposition"]
    text = download.get_data(as_text=True)
    assert text == "".join(chunk[3] for chunk in chunks)  # every chunk, in order (> 200)
    assert admin.get(f"/tasks/{task_id}/output.txt?attempt=2").status_code == 404
    first = admin.get(f"/tasks/{task_id}/log/earlier?execution={execution_id}&before=40")
    assert "line 0000" in first.get_data(as_text=True)
    assert "log-earlier" not in first.get_data(as_text=True)  # nothing before the first
    execution_append_output(conn, worker, [(execution_id, 300, "stderr", "new!\n")])
    follow = admin.get(
        f"/tasks/{task_id}/log?execution={execution_id}&after=299", htmx=True
    ).get_data(as_text=True)
    assert "new!" in follow and 'class="out stderr"' in follow
    assert "after=300" in follow and 'hx-trigger="load delay:1s"' in follow
    execution_finish(conn, worker, [{"execution_id": execution_id, "return_code": 0}])
    ended = admin.get(
        f"/tasks/{task_id}/log?execution={execution_id}&after=300", htmx=True
    ).get_data(as_text=True)
    assert "log-follow" not in ended and "ended" in ended
    other = admin.get(f"/tasks/{task_id + 1}/log?execution={execution_id}&after=0")
    assert other.status_code == 404


def test_log_of_a_live_attempt_without_output_yet_follows_from_the_start(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    [task_id] = submit(conn, "b1", {"command": "sleep 100"})
    worker = register(conn, "w1")
    [claimed] = claim(conn, worker)
    execution_id = claimed["execution_id"]
    page = admin.get(f"/tasks/{task_id}").get_data(as_text=True)
    follow = re.search(r'<span id="log-follow" hx-get="([^"]+)"', page)
    assert follow and "after" not in follow[1]
    execution_set_phase(conn, worker, execution_id, "running")
    execution_append_output(conn, worker, [(execution_id, 0, "stdout", "first\n")])
    response = admin.get(follow[1].replace("&amp;", "&"), htmx=True)
    assert response.status_code == 200 and "first" in response.get_data(as_text=True)


def test_ansi_colours_in_output_are_shown_as_classes(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    [task_id] = submit(conn, "b1", {"command": "true"})
    worker = register(conn, "w1")
    [claimed] = claim(conn, worker)
    text = "\x1b[1;31mERROR\x1b[0m plain \x1b[2K<b>x</b>\n"
    run_to_end(conn, worker, claimed["execution_id"], [("stdout", text)])
    page = admin.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert '<span class="ansi-bold ansi-fg-1">ERROR</span> plain &lt;b&gt;x&lt;/b&gt;' in page
    assert "\x1b" not in page


def test_workers_page_and_live_cells(admin: LoggedIn, conn: psycopg.Connection[Any]) -> None:
    worker = register(conn, "w1", concurrency=2)
    page = admin.get("/workers/").get_data(as_text=True)
    assert f'id="worker-{worker}"' in page and 'name="concurrency"' in page
    fragment = admin.get("/workers/", htmx=True).get_data(as_text=True)
    assert fragment.lstrip().startswith('<table class="workers">')
    cells = admin.get(f"/workers/{worker}/load", htmx=True).get_data(as_text=True)
    assert "0 running, 0 assigned of 2+0" in cells
    assert "deleted" in admin.get("/workers/999/load", htmx=True).get_data(as_text=True)


def test_cloud_page_shows_recruiters_instances_and_operations(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    submit(conn, "cloudy", {"command": "true"})
    conn.execute(
        "INSERT INTO scitq.recruiter (batch_id, provider, max_workers, flavor)"
        " SELECT id, 'fake', 3, 'b2-7' FROM scitq.batch WHERE name = 'cloudy'"
    )
    conn.execute(
        "INSERT INTO scitq.instance (provider, name, flavor, status) "
        "VALUES ('fake', 'node-1', 'b2-7', 'building')"
    )
    conn.execute(
        "INSERT INTO scitq.cloud_operation (kind, instance_id, provider, status, progress, log)"
        " SELECT 'deploy', id, 'fake', 'running', 40, 'creating <vm>' FROM scitq.instance"
    )
    page = admin.get("/cloud/").get_data(as_text=True)
    assert "cloudy" in page and "b2-7" in page and "node-1" in page
    assert "width: 40%" in page and "creating &lt;vm&gt;" in page
    fragment = admin.get("/cloud/", htmx=True).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="operations"')
    assert 'hx-trigger="load delay:2s"' in fragment  # polls while one is running
    conn.execute("UPDATE scitq.cloud_operation SET status = 'succeeded', progress = 100")
    fragment = admin.get("/cloud/", htmx=True).get_data(as_text=True)
    assert "hx-trigger" not in fragment  # and stops when none is


def test_a_finished_batch_offers_no_pause_and_the_chart_has_axes(
    admin: LoggedIn, conn: psycopg.Connection[Any]
) -> None:
    _finished_task(conn, "over")
    submit(conn, "going", {"command": "true"})
    page = admin.get("/batches/").get_data(as_text=True)
    assert "/batches/going/pause" in page
    assert "/batches/over/pause" not in page
    overview = admin.get("/").get_data(as_text=True)
    assert 'class="y-axis"' in overview and 'class="x-axis"' in overview


def test_the_favicon_is_served_to_anyone(app: Any) -> None:
    icon = app.test_client().get("/favicon.ico")  # no login
    assert icon.status_code == 200
    assert icon.mimetype == "image/svg+xml"
    assert icon.get_data(as_text=True).startswith("<svg")
