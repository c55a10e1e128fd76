"""Least privilege, read from the catalog so that a new table, view or function cannot
slip through: tests/integration/test_roles.py shows the behaviour on examples, these
tests check every object of schema scitq."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from scitq import errors
from scitq.db.execution import execution_set_phases
from scitq.db.task import task_claim, task_submit
from scitq.db.worker import worker_register

pytestmark = pytest.mark.sql

AGENT_FUNCTIONS = {
    "worker_register_v1",
    "worker_heartbeat_v1",
    "worker_heartbeat_v2",
    "worker_stop_v1",
    "task_claim_v1",
    # the claim with the task cache's candidates, and the cache record (issue 18)
    "task_claim_v2",
    "execution_record_cache_v1",
    "execution_set_phase_v1",
    "execution_set_phase_v2",
    "execution_append_output_v1",
    "execution_finish_v1",
}
READER_VIEWS = {
    "batch_progress",
    "task_overview",
    "worker_overview",
    "worker_metrics",
    "execution_overview",
    "execution_stats",
    "task_log",
    "scheduler_log",
    "recruiter_overview",
    "instance_overview",
    "cloud_operation_overview",
}


def _functions(conn: psycopg.Connection[Any], role: str) -> set[str]:
    """Functions of schema scitq that ``role`` may execute."""
    rows = conn.execute(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'scitq' AND has_function_privilege(%s, p.oid, 'EXECUTE')",
        (role,),
    )
    return {name for (name,) in rows}


def _relations(conn: psycopg.Connection[Any], role: str) -> dict[str, set[str]]:
    """Relations (tables, views, sequences) of schema scitq and what ``role`` may do."""
    found: dict[str, set[str]] = {}
    rows = conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'scitq' AND c.relkind IN ('r', 'v', 'm', 'S', 'p', 'f')"
    ).fetchall()
    assert rows
    for name, kind in rows:
        privileges = (
            ["SELECT", "UPDATE"]
            if kind == "S"
            else ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]
        )
        for privilege in privileges:
            check = (
                "SELECT has_sequence_privilege(%s, %s, %s)"
                if kind == "S"
                else "SELECT has_table_privilege(%s, %s, %s)"
            )
            row = conn.execute(check, (role, f"scitq.{name}", privilege)).fetchone()
            if row and row[0]:
                found.setdefault(name, set()).add(privilege)
    return found


def test_agent_role_executes_only_the_agent_functions(conn: psycopg.Connection[Any]) -> None:
    assert _functions(conn, "scitq_agent") == AGENT_FUNCTIONS


def test_agent_role_has_no_privilege_on_any_relation(conn: psycopg.Connection[Any]) -> None:
    assert _relations(conn, "scitq_agent") == {}


def test_reader_role_selects_the_views_only(conn: psycopg.Connection[Any]) -> None:
    assert _relations(conn, "scitq_reader") == {view: {"SELECT"} for view in READER_VIEWS}
    # the task counts that scitq.batch_progress calls (SECURITY DEFINER, reads only)
    assert _functions(conn, "scitq_reader") == {"batch_count_tasks_v1"}


def test_a_login_role_with_no_scitq_role_reaches_nothing(
    conn: psycopg.Connection[Any], make_role: Any
) -> None:
    role, _ = make_role(None)
    assert _functions(conn, role) == set()
    assert _relations(conn, role) == {}
    row = conn.execute("SELECT has_schema_privilege(%s, 'scitq', 'USAGE')", (role,)).fetchone()
    assert row == (False,)


def test_admin_writes_no_table_directly(conn: psycopg.Connection[Any]) -> None:
    """Admins (CLI, web, scheduler) read tables but change state only through functions."""
    writes = {
        name: privileges - {"SELECT"}
        for name, privileges in _relations(conn, "scitq_admin").items()
        if privileges - {"SELECT"}
    }
    assert writes == {}


def test_every_security_definer_function_pins_its_search_path(
    conn: psycopg.Connection[Any],
) -> None:
    """A SECURITY DEFINER function without SET search_path runs the caller's objects."""
    unpinned = conn.execute(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'scitq' AND p.prosecdef AND NOT EXISTS ("
        "  SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) AS c (setting)"
        "  WHERE c.setting LIKE 'search\\_path=%%')"
    ).fetchall()
    assert unpinned == []


def test_agent_cannot_shadow_objects_through_its_own_schema(
    conn: psycopg.Connection[Any], make_role: Any
) -> None:
    """An agent may not create objects in schema scitq (or public, on PG 15+) to be
    picked up by a function running with the owner's rights."""
    _, dsn = make_role("scitq_agent")
    with psycopg.connect(dsn, autocommit=True) as agent:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            agent.execute("CREATE TABLE scitq.task_shadow (id int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            agent.execute(
                "CREATE FUNCTION scitq.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT "
                "'2999-01-01'::timestamptz $$"
            )


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT scitq.task_submit_v1('b', '[{\"command\": \"x\"}]')",
        "SELECT scitq.task_cancel_v1(ARRAY[1::bigint])",
        "SELECT scitq.worker_update_v1(1, p_concurrency => 9)",
        "SELECT scitq.worker_create_role_v1('w', 'scitq_t_evil', 'pw')",
        "SELECT scitq.web_user_set_v1('evil', 'hash', 'admin')",
        "SELECT * FROM scitq.execution_expire_leases_v1()",
        "SELECT scitq.execution_output_prune_v1(now())",
        "SELECT * FROM scitq.execution_check_live_v1(1, ARRAY[1::bigint], now())",
        "SELECT scitq.task_settle_failure_v1(ARRAY[1::bigint], now())",
        # editing and rerunning tasks are for people (admins), never agents
        "SELECT * FROM scitq.task_update_v1(ARRAY[1::bigint], '{\"retries\": 1}')",
        "SELECT * FROM scitq.task_rerun_v1(ARRAY[1::bigint])",
    ],
)
def test_agent_cannot_call_admin_or_internal_functions(
    conn: psycopg.Connection[Any], make_role: Any, statement: str
) -> None:
    _, dsn = make_role("scitq_agent")
    with psycopg.connect(dsn, autocommit=True) as agent:
        with pytest.raises(
            (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFunction)
        ) as info:
            agent.execute(statement)
        # undefined only when the signature differs: the privilege check is the catalog test
        assert isinstance(info.value, psycopg.errors.InsufficientPrivilege) or (
            "does not exist" in str(info.value)
        )


def test_agent_cannot_use_the_batched_phase_for_another_worker(
    conn: psycopg.Connection[Any], make_role: Any
) -> None:
    """execution_set_phase_v2 (batched phases) is fenced like the others."""
    _, one_dsn = make_role("scitq_agent")
    _, two_dsn = make_role("scitq_agent")
    task_submit(conn, "b", [{"command": "x"}])
    with (
        psycopg.connect(one_dsn, autocommit=True) as one,
        psycopg.connect(two_dsn, autocommit=True) as two,
    ):
        mine = worker_register(one, "agent-one", batches=["b"])["id"]
        theirs = worker_register(two, "agent-two", batches=["b"])["id"]
        (claim,) = task_claim(one, mine, 1)
        with pytest.raises(errors.WorkerNotOwned):
            execution_set_phases(two, mine, [claim["execution_id"]], "running")
        with pytest.raises(errors.ExecutionNotLive):
            execution_set_phases(two, theirs, [claim["execution_id"]], "running")
    status = conn.execute("SELECT status FROM scitq.execution").fetchone()
    assert status == ("assigned",)


def test_agent_session_cannot_forge_its_identity(
    conn: psycopg.Connection[Any], make_role: Any
) -> None:
    """SET ROLE / SET SESSION AUTHORIZATION to the owner or another agent is refused."""
    one, one_dsn = make_role("scitq_agent")
    two, _ = make_role("scitq_agent")
    with psycopg.connect(one_dsn, autocommit=True) as agent:
        for statement in (
            f'SET ROLE "{two}"',
            "SET ROLE scitq_admin",
            "SET ROLE postgres",
            f'SET SESSION AUTHORIZATION "{two}"',
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                agent.execute(statement)
        assert agent.execute("SELECT session_user").fetchone() == (one,)
