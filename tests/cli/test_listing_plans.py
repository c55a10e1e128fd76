"""The task listing queries (queries/task.sql) read index ranges, not the table.

The plan test fills 200,000 tasks; bench-style numbers for 10^6 are in the report of the
listing work (a page with no filter, --after, a batch or a rare status reads at most a few
thousand index entries there too).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo

from scitq import sql
from scitq.client import Client
from scitq.db.task import PAGE_SCAN_BUDGET, task_cancel

BIG = 200_000
CHUNK = 5_000


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.fixture(scope="module")
def big_db(server_conninfo: str, template_db: str) -> Iterator[str]:
    """A database with 200,000 tasks in 4 batches, then a small batch "late" at the end of
    the id space; 100 tasks canceled (a rare status). Built once for the module."""
    name = f"scitq_big_{uuid.uuid4().hex[:8]}"
    create = pgsql.SQL("CREATE DATABASE {} TEMPLATE {}")
    with psycopg.connect(server_conninfo, autocommit=True) as admin:
        admin.execute(create.format(pgsql.Identifier(name), pgsql.Identifier(template_db)))
    conninfo = make_conninfo(server_conninfo, dbname=name)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for number in range(BIG // CHUNK):
                conn.execute(
                    "SELECT count(*) FROM scitq.task_submit_v1(%s, (SELECT jsonb_agg("
                    "jsonb_build_object('command', 'true', 'name', 't' || g)) "
                    "FROM generate_series(1, %s) g))",
                    (f"b{number % 4}", CHUNK),
                )
            conn.execute(
                "SELECT count(*) FROM scitq.task_submit_v1('late', (SELECT jsonb_agg("
                "jsonb_build_object('command', 'true')) FROM generate_series(1, 2000)))"
            )
            task_cancel(conn, range(1, BIG, BIG // 100))
            conn.execute("ANALYZE")
        yield conninfo
    finally:
        with psycopg.connect(server_conninfo, autocommit=True) as admin:
            admin.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )


@pytest.fixture
def big(big_db: str) -> Iterator[tuple[psycopg.Connection[Any], dict[str, int]]]:
    with psycopg.connect(big_db, autocommit=True) as conn:
        ids = dict(conn.execute("SELECT name, id FROM scitq.batch").fetchall())
        yield conn, {name: int(value) for name, value in ids.items()}


def _task_scans(conn: psycopg.Connection[Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    statement = "EXPLAIN (ANALYZE, FORMAT JSON) " + sql.queries()["task_list"]
    row = conn.execute(statement, params, prepare=False).fetchone()
    assert row is not None
    scans = [node for node in _nodes(row[0][0]["Plan"]) if node.get("Relation Name") == "task"]
    assert scans, row
    return scans


def _read(scan: dict[str, Any]) -> float:
    """Rows read from the table by a scan: those it returned and those its filter dropped."""
    return float(scan["Actual Rows"] * scan["Actual Loops"] + scan.get("Rows Removed by Filter", 0))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("filters", "phase", "most"),
    [
        ({}, "single", 101),
        ({"after": BIG - 1000}, "single", 101),
        ({"task_ids": [5, BIG // 2]}, "single", 2),
        # a batch dense right after --after (ids 110,001 to 115,000 are b2's): the bounded
        # window finds the page at once
        ({"batch": "b2", "after": 110_000}, "window", 101),
        ({"batch": "b2", "after": 100_000}, "window", 10_101),
        # the first page of a batch at the end: the window (20,000 ids) is not enough,
        # the batch's index then reads the batch only
        ({"batch": "late"}, "window", 20_000),
        ({"batch": "late"}, "index", 2_000),
        # a rare status: the status index
        ({"statuses": ["canceled"]}, "index", 100),
        ({"batch": "b0", "statuses": ["canceled"]}, "index", 100),
    ],
)
def test_a_page_reads_index_ranges_not_the_table(
    big: tuple[psycopg.Connection[Any], dict[str, int]], filters: dict[str, Any], phase: str,
    most: int,
) -> None:  # fmt: skip
    conn, batch_ids = big
    params: dict[str, Any] = dict.fromkeys(
        ("after", "task_ids", "batch_id", "statuses", "name", "since", "worker", "upto")
    )
    params.update(limit=101, by_id=phase != "index", **filters)
    if "batch" in params:
        params["batch_id"] = batch_ids[params.pop("batch")]
    if phase == "window":  # the window's last id, as Client.page finds it first
        window = {"after": params["after"], "scan_budget": PAGE_SCAN_BUDGET}
        params["upto"] = conn.execute(sql.queries()["task_window"], window).fetchone()[0]

    scans = _task_scans(conn, params)

    for scan in scans:
        assert "Seq Scan" not in scan["Node Type"], scan
        assert "Index" in scan["Node Type"] or "Bitmap" in scan["Node Type"], scan["Node Type"]
    # the window's bound itself is an index-only scan of at most PAGE_SCAN_BUDGET ids
    assert max(_read(scan) for scan in scans) <= max(most, PAGE_SCAN_BUDGET * (phase == "window"))
    main = [scan for scan in scans if scan["Node Type"] != "Index Only Scan"]
    assert sum(_read(scan) for scan in main) <= most, (filters, phase, main)


@pytest.mark.slow
def test_client_pages_of_a_batch_at_the_end(
    big_db: str, big: tuple[psycopg.Connection[Any], dict[str, int]]
) -> None:
    conn = big[0]
    with Client(big_db) as client:
        first = client.page(batch="late", limit=50)
        second = client.page(batch="late", limit=50, after=first[-1].id)
        canceled = list(client.tasks(status="canceled", page_size=30))
    late = [row[0] for row in conn.execute(
        "SELECT t.id FROM scitq.task t JOIN scitq.batch b ON b.id = t.batch_id "
        "WHERE b.name = 'late' ORDER BY t.id LIMIT 100")]  # fmt: skip
    assert [t.id for t in first + second] == late
    assert [t.id for t in canceled] == list(range(1, BIG, BIG // 100))
