"""Progress and listing reads keep their shape whatever the statistics (issue 20).

A database of 10,000 tasks in mixed statuses that was never analyzed (autovacuum off for
its tables), read two ways: planned with each call (the planner knows only the tables'
sizes), and through plans prepared while the tables were empty (`force_generic_plan`,
what a prepared statement of a long-lived connection such as `Client.wait` keeps until an
ANALYZE). Before issue 20 the second read of `scitq.batch_progress` looped over every
succeeded execution for each task: 41 s here, ten minutes after a 2,000-task run.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo

from scitq import sql
from scitq.client import Client
from scitq.states import TaskStatus

TASKS = 10_000
#: Tables big enough that a scan of them per row of another is the bug this guards.
BIG_TABLES = {"task", "execution", "task_event", "execution_output"}
#: Parameters of the read queries, by name (any other is NULL).
VALUES: dict[str, Any] = {
    "batch": "b0", "task_id": 5, "task_ids": [1, 2, 3], "execution_id": 5,
    "execution_ids": [1, 2, 3], "worker": "w1", "name": "w1", "worker_id": 1, "limit": 100,
    "after_seq": 0, "before_seq": 100, "window_seconds": 3600.0, "sample": 2000,
    "bucket_seconds": 60.0, "grace_seconds": 30.0, "scan_budget": 20_000, "by_id": True,
    "boot_seconds": 600.0, "deleted_within_seconds": 3600.0, "log_chars": 1000, "all": True,
}  # fmt: skip


def read_queries() -> dict[str, str]:
    """The named queries that only read (no stored function of the API, no lock), and a
    plain read of every view."""
    found = {
        name: text
        for name, text in sql.queries().items()
        if not re.search(r"scitq\.\w+_v\d+\(|pg_\w*advisory|^\s*(INSERT|UPDATE|DELETE)", text, re.M)
    }
    return found


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _loops_over_a_big_table(plan: dict[str, Any]) -> list[str]:
    """Scans of a big table repeated for the rows of another: a sequential scan inside a
    loop, or more than a few rows read per loop (an index lookup reads one or two)."""
    bad = []
    for node in _nodes(plan):
        loops = node.get("Actual Loops", 1)
        if node.get("Relation Name") not in BIG_TABLES or loops <= 1:
            continue
        per_loop = node["Actual Rows"] + node.get("Rows Removed by Filter", 0) / loops
        if "Seq Scan" in node["Node Type"] or per_loop > 10:
            bad.append(f"{node['Node Type']} on {node['Relation Name']}: {loops} loops, "
                       f"{per_loop:.0f} rows each")  # fmt: skip
    return bad


def _parameters(name: str, text: str) -> tuple[str, list[Any]]:
    """The query with $n placeholders, and their values."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", text)))
    values = {key: VALUES.get(key) for key in names}
    if name == "task_ids_by_name":
        values.update(upto=TASKS, name="t1%")
    for number, key in enumerate(names, 1):
        text = text.replace(f"%({key})s", f"${number}")
    return text, [values[key] for key in names]


def _with_values(name: str, text: str) -> pgsql.Composed:
    """The query with its values as literals (planned for them, as an unprepared call is)."""
    body, values = _parameters(name, text)
    body = body.replace("{", "{{").replace("}", "}}")
    for number in range(len(values), 0, -1):
        body = body.replace(f"${number}", "{" + str(number - 1) + "}")
    return pgsql.SQL(body).format(*(pgsql.Literal(value) for value in values))  # type: ignore[arg-type]


def _fill(conninfo: str) -> None:
    """10,000 tasks over two batches, then a third small one: 60 % claimed and finished (one
    in ten failed), 500 assigned, some running, paused, canceled and waiting."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for number in range(2):
            conn.execute(
                "SELECT count(*) FROM scitq.task_submit_v1(%s, (SELECT jsonb_agg("
                "jsonb_build_object('command', 'true', 'name', 't' || g)) "
                "FROM generate_series(1, %s) g))",
                (f"b{number}", TASKS // 2),
            )
        worker = conn.execute(
            "SELECT id FROM scitq.worker_register_v1('w1', 'h', '{}', 100000, 0)"
        ).fetchone()[0]
        done = 0
        while done < TASKS * 0.6:
            claimed = conn.execute(
                "SELECT execution_id FROM scitq.task_claim_v1(%s, 1000)", (worker,)
            ).fetchall()
            results = [{"execution_id": row[0], "return_code": int(i % 10 == 0), "wall_seconds": 1}
                       for i, row in enumerate(claimed)]  # fmt: skip
            conn.execute(
                "SELECT count(*) FROM scitq.execution_finish_v1(%s, %s::jsonb)",
                (worker, json.dumps(results)),
            )
            done += len(claimed)
        running = conn.execute(
            "SELECT array_agg(execution_id) FROM scitq.task_claim_v1(%s, 500)", (worker,)
        ).fetchone()[0]
        conn.execute(
            "SELECT scitq.execution_set_phase_v2(%s, %s, 'running')", (worker, running[:200])
        )
        ids = "ARRAY(SELECT generate_series(%s::bigint, %s::bigint))"
        conn.execute(f"SELECT scitq.task_pause_v1({ids})", (9000, 9099))
        conn.execute(f"SELECT scitq.task_cancel_v1({ids})", (9100, 9149))
        first = conn.execute("SELECT scitq.task_add_v1('b2', 'true')").fetchone()[0]
        conn.execute("SELECT scitq.task_add_v1('b2', 'true', p_depends_on => %s)", ([first],))


@pytest.fixture(scope="module")
def never_analyzed(server_conninfo: str, template_db: str) -> Iterator[dict[str, Any]]:
    """The filled database (never analyzed), and a connection holding plans of every read
    query prepared while it was empty."""
    name = f"scitq_plans_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_conninfo, autocommit=True) as admin:
        admin.execute(pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            pgsql.Identifier(name), pgsql.Identifier(template_db)))  # fmt: skip
    conninfo = make_conninfo(server_conninfo, dbname=name)
    try:
        with psycopg.connect(conninfo, autocommit=True) as cached:
            for table in ("task", "execution", "batch", "task_event", "worker", "execution_output"):
                # a partitioned table takes the setting on its leaves (itself when plain)
                for (leaf,) in cached.execute(
                    "SELECT relid::text FROM pg_partition_tree(%s) WHERE isleaf",
                    (f"scitq.{table}",),
                ).fetchall():
                    cached.execute(f"ALTER TABLE {leaf} SET (autovacuum_enabled = false)")
            cached.execute("SELECT scitq.batch_ensure_v1('b0'), scitq.batch_ensure_v1('b1')")
            cached.execute("SET plan_cache_mode = force_generic_plan")
            statements = {
                **read_queries(),
                **{f"view {view}": f"SELECT * FROM scitq.{view}" for (view,) in cached.execute(
                    "SELECT viewname FROM pg_views WHERE schemaname = 'scitq'")},
            }  # fmt: skip
            prepared = {}
            for number, (query, text) in enumerate(sorted(statements.items())):
                body, values = _parameters(query, text)
                cached.execute(pgsql.SQL("PREPARE {} AS ").format(pgsql.Identifier(f"p{number}"))
                               + pgsql.SQL(body))  # type: ignore[arg-type]  # fmt: skip
                arguments = pgsql.SQL(", ").join(pgsql.Literal(value) for value in values)
                execute = pgsql.SQL("EXECUTE {}").format(pgsql.Identifier(f"p{number}"))
                if values:
                    execute += pgsql.SQL("(") + arguments + pgsql.SQL(")")
                cached.execute(execute)  # the generic plan is made now, on empty tables
                prepared[query] = execute
            _fill(conninfo)
            analyzed = cached.execute(
                "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = 'scitq' "
                "AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)"
            ).fetchone()
            assert analyzed == (0,)
            cached.execute("SET statement_timeout = '10s'")
            yield {"conninfo": conninfo, "cached": cached, "prepared": prepared,
                   "statements": statements}  # fmt: skip
    finally:
        with psycopg.connect(server_conninfo, autocommit=True) as admin:
            admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                pgsql.Identifier(name)))  # fmt: skip


def _plan(conn: psycopg.Connection[Any], statement: pgsql.Composable) -> dict[str, Any]:
    row = conn.execute(pgsql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + statement).fetchone()
    assert row is not None
    return dict(row[0][0]["Plan"])


def test_progress_never_loops_over_executions(never_analyzed: dict[str, Any]) -> None:
    cached = never_analyzed["cached"]
    for batch in (None, "b0"):
        with psycopg.connect(never_analyzed["conninfo"], autocommit=True) as fresh:
            fresh.execute("SET statement_timeout = '10s'")
            text = sql.queries()["batch_progress"].replace("%(batch)s", "%(one)s")
            VALUES["one"] = batch
            plans = [_plan(fresh, _with_values("batch_progress", text))]
        cached_statement = never_analyzed["prepared"]["batch_progress"]
        if batch is None:  # the prepared statement was made with "b0"; the view for all
            cached_statement = never_analyzed["prepared"]["view batch_progress"]
        plans.append(_plan(cached, cached_statement))
        for plan in plans:
            scanned = {node.get("Relation Name") for node in _nodes(plan)}
            assert "execution" not in scanned, plan
            assert _loops_over_a_big_table(plan) == [], plan

    with Client(never_analyzed["conninfo"]) as client:
        progress = {row.batch: row for row in client.batches()}
    with psycopg.connect(never_analyzed["conninfo"]) as conn:
        truth = conn.execute(
            "SELECT b.name, t.status::text, count(*) FROM scitq.task t "
            "JOIN scitq.batch b ON b.id = t.batch_id GROUP BY 1, 2"
        ).fetchall()
    counts: dict[str, dict[str, int]] = {}
    for batch_name, status, number in truth:
        counts.setdefault(batch_name, {})[status] = number
    assert {name: row.counts for name, row in progress.items()} == counts
    b1 = progress["b1"]
    assert b1.counts[TaskStatus.RUNNING] == 200 and b1.running == 200
    assert b1.paused == 100 and b1.canceled == 50 and b1.total == TASKS // 2
    assert progress["b2"].waiting == 1 and progress["b2"].remaining == 2
    assert b1.remaining == b1.total - b1.succeeded - b1.failed - b1.canceled
    assert progress["b0"].mean_seconds is not None and progress["b2"].mean_seconds is None


@pytest.mark.parametrize("query", sorted([*read_queries(), *(
    f"view {view}" for view in ("batch_progress", "task_overview", "worker_overview",
    "execution_overview", "execution_stats", "task_log", "scheduler_log",
    "recruiter_overview", "instance_overview", "cloud_operation_overview")
)]))  # fmt: skip
def test_no_read_loops_over_a_big_table(never_analyzed: dict[str, Any], query: str) -> None:
    """Every view and read query, planned fresh and from a plan cached on empty tables:
    no scan of a big table repeated for each row of another (bounded by the 10 s
    statement timeout)."""
    statement = _with_values(query, never_analyzed["statements"][query])
    with psycopg.connect(never_analyzed["conninfo"], autocommit=True) as fresh:
        fresh.execute("SET statement_timeout = '10s'")
        assert _loops_over_a_big_table(_plan(fresh, statement)) == []
    cached = _plan(never_analyzed["cached"], never_analyzed["prepared"][query])
    assert _loops_over_a_big_table(cached) == []
