"""The state machine (scitq/sql/functions/05_states.sql): one writer per status column,
the transitions it allows, and the status classes shared with `scitq.states`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scitq import errors, sql, states
from scitq.db.connection import translated

SQL_DIR = Path(sql.__file__).resolve().parent
WRITERS = {"task": "task_set_status", "execution": "execution_set_status"}
T0 = datetime(2020, 1, 1, tzinfo=UTC)

# UPDATE [scitq.]task|execution [[AS] alias] SET <assignments> FROM|WHERE|RETURNING|;
_UPDATE = re.compile(
    r"\bUPDATE\s+(?:scitq\.)?(task|execution)\b(?:\s+(?:AS\s+)?(?!SET\b)\w+)?\s+SET\s+(.*?)"
    r"(?:\bFROM\b|\bWHERE\b|\bRETURNING\b|;)",
    re.IGNORECASE | re.DOTALL,
)
_FUNCTION = re.compile(r"CREATE\s+OR\s+REPLACE\s+FUNCTION\s+scitq\.(\w+)", re.IGNORECASE)
# an assignment to status in a SET list (a condition on it is qualified or follows WHERE)
_SETS_STATUS = re.compile(r"(?:^|,)\s*status\s*=", re.IGNORECASE)


def status_writers(text: str) -> list[tuple[str, str]]:
    """(table, enclosing function) of every UPDATE in ``text`` that sets status."""
    text = re.sub(r"--[^\n]*", "", text)
    starts = [(match.start(), match.group(1)) for match in _FUNCTION.finditer(text)]
    found = []
    for match in _UPDATE.finditer(text):
        if _SETS_STATUS.search(match.group(2)):
            enclosing = [name for start, name in starts if start < match.start()]
            found.append((match.group(1).lower(), enclosing[-1] if enclosing else "<top level>"))
    return found


def test_the_status_checker_sees_an_update_of_status() -> None:
    assert status_writers("CREATE OR REPLACE FUNCTION scitq.f() AS $$ UPDATE scitq.task t\n"
                          "SET attempt_count = 1, status = 'x' WHERE t.id = 1; $$") == [
        ("task", "f")
    ]  # fmt: skip
    assert status_writers("UPDATE scitq.task SET cancel_reason = NULL WHERE status = 'x';") == []
    assert status_writers("UPDATE scitq.task_dependency SET status = 1;") == []


def test_only_the_two_writers_update_a_status() -> None:
    sources = sorted([*SQL_DIR.glob("functions/*.sql"), *SQL_DIR.glob("queries/*.sql")])
    assert sources
    writers = sorted(
        (path.name, table, function)
        for path in sources
        for table, function in status_writers(path.read_text(encoding="utf-8"))
    )
    assert writers == [
        ("05_states.sql", "execution", WRITERS["execution"]),
        ("05_states.sql", "task", WRITERS["task"]),
    ]


def test_sql_status_classes_are_the_states_sets(conn: psycopg.Connection[Any]) -> None:
    def of(function: str, kind: type[states.StrEnum]) -> set[str]:
        rows = conn.execute(
            f"SELECT s FROM unnest(enum_range(NULL::scitq.{states_type(kind)})) s "
            f"WHERE scitq.{function}(s)"
        )
        return {value for (value,) in rows}

    assert of("task_is_live", states.TaskStatus) == set(states.LIVE_TASK_STATUSES)
    assert of("task_is_held", states.TaskStatus) == set(states.HELD_TASK_STATUSES)
    assert of("execution_is_live", states.ExecutionStatus) == set(states.LIVE_EXECUTION_STATUSES)
    phases = conn.execute("SELECT scitq.execution_phases()::text[]").fetchone()
    assert phases == ([str(phase) for phase in states.EXECUTION_PHASES],)


def states_type(kind: type[states.StrEnum]) -> str:
    return next(name for name, values in states.SQL_ENUMS.items() if values is kind)


def transitions(conn: psycopg.Connection[Any], kind: str) -> set[tuple[str | None, str]]:
    rows = conn.execute(f"SELECT from_status, to_status FROM scitq.{kind}_transition")
    found = set(rows.fetchall())
    assert len(found) == len(conn.execute(f"SELECT 1 FROM scitq.{kind}_transition").fetchall())
    return found


def test_transitions_name_only_known_statuses_and_leave_no_final_execution(
    conn: psycopg.Connection[Any],
) -> None:
    task = transitions(conn, "task")
    assert {to for _, to in task} | {f for f, _ in task if f} <= set(states.TaskStatus)
    # a succeeded task stays succeeded, unless a user runs it again
    assert {to for f, to in task if f == states.TaskStatus.SUCCEEDED} == {
        states.TaskStatus.PENDING, states.TaskStatus.WAITING
    }  # fmt: skip
    assert {made for f, _, made in conn.execute(
        "SELECT from_status, to_status, made_by FROM scitq.task_transition"
    ) if f == states.TaskStatus.SUCCEEDED} == {
        "task_rerun_v1", "task_rerun_v1: a dependency runs again"
    }  # fmt: skip
    execution = transitions(conn, "execution")
    assert not {f for f, _ in execution if f in states.FINAL_EXECUTION_STATUSES}
    assert {(None, states.ExecutionStatus.ASSIGNED)} == {(f, t) for f, t in execution if f is None}


def submit(
    conn: psycopg.Connection[Any], tasks: list[dict[str, Any]], batch: str = "b"
) -> list[int]:
    rows = conn.execute(
        "SELECT id FROM scitq.task_submit_v1(%s, %s, %s)",
        (batch, psycopg.types.json.Jsonb(tasks), T0),
    )
    return [task_id for (task_id,) in rows]


def status_of(conn: psycopg.Connection[Any], table: str, ids: list[int]) -> list[str]:
    rows = conn.execute(
        f"SELECT status FROM scitq.{table} WHERE id = ANY (%s) ORDER BY id",
        (ids,),
    )
    return [status for (status,) in rows]


def test_a_forbidden_task_transition_raises_and_changes_nothing(
    conn: psycopg.Connection[Any],
) -> None:
    ids = submit(conn, [{"command": "a"}, {"command": "b"}])
    events = conn.execute("SELECT count(*) FROM scitq.task_event").fetchone()
    # pending -> paused is allowed, pending -> succeeded is not: the whole call is refused
    refused = rf"task {ids[1]}: pending -> succeeded"
    with pytest.raises(errors.InvalidTransition, match=refused), translated():
        conn.execute(
            "SELECT count(*) FROM scitq.task_set_status(%s, %s::scitq.task_status[], now())",
            (ids, ["paused", "succeeded"]),
        )
    assert status_of(conn, "task", ids) == ["pending", "pending"]
    assert conn.execute("SELECT count(*) FROM scitq.task_event").fetchone() == events
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT scitq.task_set_status(%s, '{failed}', now())", (ids,))
    assert info.value.sqlstate == "SQ006"


def test_a_forbidden_execution_transition_raises_and_changes_nothing(
    conn: psycopg.Connection[Any],
) -> None:
    submit(conn, [{"command": "a"}])
    worker = conn.execute(
        "SELECT (scitq.worker_register_v1('w', p_batches => '{b}')).id"
    ).fetchone()
    (execution,) = conn.execute(
        "SELECT execution_id FROM scitq.task_claim_v1(%s, 1)", worker
    ).fetchone()
    conn.execute(
        "SELECT scitq.execution_finish_v1(%s, %s)",
        (worker[0], psycopg.types.json.Jsonb([{"execution_id": execution, "return_code": 0}])),
    )
    with pytest.raises(errors.InvalidTransition, match="succeeded -> running"), translated():
        conn.execute("SELECT scitq.execution_set_status(%s, '{running}', now())", ([execution],))
    assert status_of(conn, "execution", [execution]) == ["succeeded"]


def test_tasks_in_another_status_than_asked_are_skipped(conn: psycopg.Connection[Any]) -> None:
    """p_from is the caller's filter: a task that moved meanwhile is left as it is."""
    ids = submit(conn, [{"command": "a"}])
    moved = conn.execute(
        "SELECT count(*) FROM scitq.task_set_status("
        "%s, '{succeeded}', now(), p_from => '{running}')",
        (ids,),
    ).fetchone()
    assert moved == (0,)
    assert status_of(conn, "task", ids) == ["pending"]


def test_no_role_may_call_the_writers(conn: psycopg.Connection[Any]) -> None:
    for function in WRITERS.values():
        for role in ("scitq_admin", "scitq_agent", "scitq_reader", "public"):
            row = conn.execute(
                "SELECT bool_or(has_function_privilege(%s, p.oid, 'EXECUTE')) FROM pg_proc p "
                "WHERE p.pronamespace = 'scitq'::regnamespace AND p.proname = %s",
                (role, function),
            ).fetchone()
            assert row == (False,), f"{role} may execute {function}"


def test_every_transition_the_api_makes_is_in_the_set(conn: psycopg.Connection[Any]) -> None:
    """A tour of the API; each task transition it makes is recorded by task_event, each
    execution transition by a trigger of this test. Together they are the whole set."""
    conn.execute("CREATE TABLE public.execution_move (from_status text, to_status text)")
    conn.execute(
        "CREATE FUNCTION public.record_execution_move() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN INSERT INTO public.execution_move SELECT o.status, n.status FROM old_rows o"
        " JOIN new_rows n ON n.id = o.id WHERE o.status <> n.status;"
        " INSERT INTO public.execution_move SELECT NULL, n.status FROM new_rows n"
        " WHERE NOT EXISTS (SELECT 1 FROM old_rows o WHERE o.id = n.id); RETURN NULL; END $$"
    )
    conn.execute(
        "CREATE TRIGGER record_move AFTER UPDATE ON scitq.execution REFERENCING OLD TABLE AS"
        " old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION"
        " public.record_execution_move()"
    )
    conn.execute(
        "CREATE FUNCTION public.record_execution_insert() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN INSERT INTO public.execution_move SELECT NULL, n.status FROM new_rows n;"
        " RETURN NULL; END $$"
    )
    conn.execute(
        "CREATE TRIGGER record_insert AFTER INSERT ON scitq.execution REFERENCING NEW TABLE AS"
        " new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.record_execution_insert()"
    )
    tour(conn)
    # the edits of task_update_v1 (change set) are events, not transitions
    made = set(conn.execute(
        "SELECT from_status::text, to_status::text FROM scitq.task_event WHERE change IS NULL"
    ))  # fmt: skip
    assert conn.execute("SELECT count(*) FROM scitq.task_event WHERE change IS NOT NULL"
                        " AND from_status = to_status").fetchone() == (1,)  # fmt: skip
    assert made == {(f, t) for f, t in transitions(conn, "task")}
    made = set(conn.execute("SELECT from_status, to_status FROM public.execution_move"))
    assert made <= transitions(conn, "execution")
    # the phases, and an end from each of them
    assert {(f, t) for f, t in made if f} >= {
        ("assigned", "downloading"), ("downloading", "running"), ("running", "uploading"),
        ("uploading", "succeeded"), ("assigned", "lost"), ("running", "failed"),
        ("assigned", "canceled"), ("running", "timeout"),
    }  # fmt: skip


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def tour(conn: psycopg.Connection[Any]) -> None:
    """Every task transition of scitq.task_transition, made through the API."""

    def call(query: str, *args: Any) -> list[tuple[Any, ...]]:
        return conn.execute(query, args).fetchall()

    def claim(worker: int, limit: int, when: float) -> list[int]:
        rows = call(
            "SELECT execution_id FROM scitq.task_claim_v1(%s, %s, %s)", worker, limit, at(when)
        )
        return [execution for (execution,) in rows]

    def finish(worker: int, results: list[dict[str, Any]], when: float) -> None:
        call(
            "SELECT scitq.execution_finish_v1(%s, %s, %s)",
            worker,
            psycopg.types.json.Jsonb(results),
            at(when),
        )

    def phase(worker: int, executions: list[int], name: str, when: float) -> None:
        call(
            "SELECT scitq.execution_set_phase_v2(%s, %s, %s, %s)",
            worker,
            executions,
            name,
            at(when),
        )

    def register(name: str, batch: str, lease: float, when: float) -> int:
        rows = call(
            "SELECT (scitq.worker_register_v1(%s, p_batches => %s, p_concurrency => 10, "
            "p_lease_seconds => %s, p_now => %s)).id",
            name, [batch], lease, at(when),
        )  # fmt: skip
        return int(rows[0][0])

    worker = register("w1", "b", 60, 0)
    # waiting -> pending (its dependency succeeds); pending -> assigned -> running -> succeeded
    second = submit(
        conn, [{"command": "a", "name": "a"}, {"command": "b", "depends_on_names": ["a"]}]
    )
    (execution,) = claim(worker, 1, 1)
    phase(worker, [execution], "downloading", 2)
    phase(worker, [execution], "running", 3)
    phase(worker, [execution], "uploading", 4)
    finish(worker, [{"execution_id": execution, "return_code": 0}], 5)
    # assigned -> succeeded
    (execution,) = claim(worker, 1, 6)
    finish(worker, [{"execution_id": execution, "return_code": 0}], 7)
    # assigned -> failed, running -> failed (no retry left); NULL -> canceled (a failed dependency)
    failing = submit(conn, [{"command": "c"}, {"command": "d"}])
    ran, unstarted = claim(worker, 2, 8)
    phase(worker, [ran], "running", 9)
    finish(
        worker,
        [{"execution_id": ran, "return_code": 1}, {"execution_id": unstarted, "return_code": 2}],
        10,
    )
    submit(conn, [{"command": "e", "depends_on": [failing[0]]}])
    child = submit(conn, [{"command": "f", "depends_on": [failing[1]]}])
    # failed -> pending; canceled -> waiting (e and f wait for the retried c and d)
    call("SELECT scitq.task_retry_v1(%s, %s)", [failing[0], failing[1], *child], at(12))
    # assigned -> pending, running -> pending (retries left): lost and timed out
    retried = submit(conn, [{"command": "g", "retries": 5}, {"command": "h", "retries": 5}], "r")
    other = register("w2", "r", 10, 12)
    lost, timed_out = claim(other, 2, 13)
    phase(other, [timed_out], "running", 14)
    call("SELECT scitq.execution_timeout_v1(%s, 'late', %s)", [timed_out], at(15))
    call("SELECT scitq.execution_expire_leases_v1(%s)", at(30))
    call("SELECT scitq.worker_stop_v1(%s, %s)", other, at(31))
    # pause, resume and cancel: waiting, pending and paused tasks
    held = submit(
        conn, [{"command": "i", "name": "i"}, {"command": "j", "depends_on_names": ["i"]}], "p"
    )
    call("SELECT scitq.task_pause_v1(%s, %s)", held, at(32))
    call("SELECT scitq.task_resume_v1(%s, %s)", held, at(33))
    call("SELECT scitq.task_pause_v1(%s, %s)", held[:1], at(34))
    call("SELECT scitq.task_cancel_v1(%s, 'x', %s)", held, at(35))
    # running, assigned and pending tasks canceled; canceled -> pending (retry)
    busy = submit(conn, [{"command": "k"}, {"command": "l"}, {"command": "m"}], "q")
    third = register("w3", "q", 60, 35)
    executions = claim(third, 2, 36)
    phase(third, executions[:1], "running", 37)
    call("SELECT scitq.task_cancel_v1(%s, 'x', %s)", busy, at(38))
    call("SELECT scitq.task_retry_v1(%s, %s)", busy[:1], at(39))
    # reruns: succeeded -> pending, and its unstarted dependent pending -> waiting;
    # succeeded -> waiting and failed -> waiting (a dependency runs again)
    after_n = {"depends_on_names": ["n"]}
    n, o, p = submit(conn, [{"command": "n", "name": "n"}, {"command": "o", **after_n},
                            {"command": "p", **after_n}], "s")  # fmt: skip
    fourth = register("w4", "s", 60, 40)
    (execution,) = claim(fourth, 1, 41)
    finish(fourth, [{"execution_id": execution, "return_code": 0}], 42)
    ran = claim(fourth, 2, 43)
    finish(fourth, [{"execution_id": ran[0], "return_code": 1},
                    {"execution_id": ran[1], "return_code": 0}], 44)  # fmt: skip
    (q,) = submit(conn, [{"command": "q", "depends_on": [n]}], "s")
    call("SELECT scitq.task_rerun_v1(%s, %s)", [n], at(45))
    call("SELECT scitq.task_rerun_v1(%s, %s)", [p], at(46))
    call("SELECT scitq.task_retry_v1(%s, %s)", [o], at(47))
    # an edit in place: an event with its change, no transition
    call('SELECT scitq.task_update_v1(%s, \'{"command": "r"}\', p_now => %s)', [q], at(48))
    assert status_of(conn, "task", [n, o, p, q]) == ["pending", "waiting", "waiting", "waiting"]
    assert second and retried and lost


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (
            "SELECT e.id FROM scitq.execution e WHERE scitq.execution_is_live(e.status) "
            "AND e.lease_expires_at < now() ORDER BY e.lease_expires_at LIMIT 10",
            "execution_lease_expires_at_idx",
        ),
        (
            "SELECT count(*) FROM scitq.execution e "
            "WHERE e.worker_id = 1 AND scitq.execution_is_live(e.status)",
            "execution_worker_id_live_idx",
        ),
    ],
)
def test_queries_written_with_the_live_helper_use_the_live_indexes(
    conn: psycopg.Connection[Any], query: str, index: str
) -> None:
    """execution_is_live is inlined: the planner proves the partial indexes' predicate."""
    conn.execute("SET enable_seqscan = off")
    plan = "\n".join(line for (line,) in conn.execute("EXPLAIN " + query))
    assert index in plan
