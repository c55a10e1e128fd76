"""Bad input through every SQL function argument: each call is refused with a one-line
error that names what is wrong, and the database is left exactly as it was."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from scitq import errors
from scitq.db.batch import batch_pause, batch_signal
from scitq.db.execution import (
    execution_append_output,
    execution_finish,
    execution_overdue,
    execution_set_phase,
)
from scitq.db.task import task_claim, task_signal, task_submit
from scitq.db.worker import worker_heartbeat, worker_register, worker_update
from tests.badinput.snapshot import snapshot

pytestmark = pytest.mark.sql

INT_MAX = 2**31 - 1
BIG = 2**63  # beyond bigint
HUGE_TEXT = "x" * (2 * 1024 * 1024)


@dataclass
class World:
    """A batch with a task, a worker holding one execution, and a pending task."""

    worker: int
    execution: int
    task: int
    pending: int


@pytest.fixture
def world(conn: psycopg.Connection[Any]) -> World:
    held, pending = task_submit(
        conn, "b", [{"command": "true", "name": "held"}, {"command": "true", "name": "p"}]
    )
    worker = worker_register(conn, "w", batches=["b"])["id"]
    (claim,) = task_claim(conn, worker, 1)
    return World(worker, claim["execution_id"], held["id"], pending["id"])


def submit(**fields: Any) -> Callable[[psycopg.Connection[Any], World], Any]:
    return lambda conn, w: task_submit(conn, "b", [{"command": "true", **fields}])


def raw(statement: str, *params: Any) -> Callable[[psycopg.Connection[Any], World], Any]:
    """A call through the same error translation as the named queries."""

    def call(conn: psycopg.Connection[Any], w: World) -> Any:
        from scitq.db.connection import translated

        with translated():
            return conn.execute(statement, params).fetchall()

    return call


Call = Callable[[psycopg.Connection[Any], World], Any]
REC = "SELECT scitq.recruiter_set_v1('b', 'local'"
E = errors.InvalidArgument
CASES: list[tuple[str, Call, type[Exception], str]] = [
    # task_submit_v1: the list and each field
    ("submit-empty", lambda c, w: task_submit(c, "b", []), E, "non-empty"),
    ("submit-object", raw("SELECT scitq.task_submit_v1('b', '{}')"), E, "array"),
    ("submit-not-json", raw("SELECT scitq.task_submit_v1('b', 'nope')"), E, "json"),
    ("submit-no-command", lambda c, w: task_submit(c, "b", [{"name": "x"}]), E, "command"),
    ("command-number", submit(command=5), E, "command"),
    ("command-null", submit(command=None), E, "command"),
    ("command-empty", submit(command=""), E, "command"),
    ("command-nul", submit(command="echo a\x00b"), E, "command"),
    ("unknown-field", submit(bogus=1), E, "bogus"),
    ("name-number", submit(name=3), E, "name"),
    ("shell-string", submit(shell="yes"), E, "shell"),
    ("retries-negative", submit(retries=-1), E, "retries"),
    ("retries-huge", submit(retries=BIG), E, "retries"),
    ("retries-fraction", submit(retries=1.5), E, "retries"),
    ("retries-string", submit(retries="two"), E, "retries"),
    ("retry-delay-negative", submit(retry_delay_seconds=-1), E, "retry_delay_seconds"),
    ("download-timeout-zero", submit(download_timeout_seconds=0), E, "timeouts"),
    ("run-timeout-negative", submit(run_timeout_seconds=-5), E, "timeouts"),
    ("priority-huge", submit(priority=BIG), E, "priority"),
    ("priority-fraction", submit(priority=0.5), E, "priority"),
    ("env-list", submit(env=["A=1"]), E, "env"),
    ("env-number-value", submit(env={"A": 1}), E, "env"),
    ("env-value-nul", submit(env={"A": "a\x00b"}), E, "env"),
    ("tags-string", submit(tags="t"), E, "tags"),
    ("inputs-string", submit(inputs="s3://b/x"), E, "inputs"),
    ("resources-object", submit(resources={"a": 1}), E, "resources"),
    ("output-list", submit(output=["s3://b/o/"]), E, "output"),
    ("depends-on-strings", submit(depends_on=["a"]), E, "depends_on"),
    ("depends-on-unknown", submit(depends_on=[987654]), errors.NotFound, "987654"),
    ("depends-on-negative", submit(depends_on=[-1]), errors.NotFound, "-1"),
    ("depends-on-huge", submit(depends_on=[BIG]), E, "out of range"),
    (
        "depends-on-names-unknown",
        submit(depends_on_names=["nope"]),
        errors.NotFound,
        "depends_on_names",
    ),
    ("container-number", submit(container=1), E, "container"),
    # batch names (every batch function goes through the same check)
    ("batch-empty", lambda c, w: task_submit(c, "", [{"command": "x"}]), E, "batch"),
    ("batch-slash", lambda c, w: task_submit(c, "a/b", [{"command": "x"}]), E, "batch"),
    ("batch-newline", lambda c, w: task_submit(c, "a\nb", [{"command": "x"}]), E, "batch"),
    ("batch-nul", lambda c, w: task_submit(c, "a\x00b", [{"command": "x"}]), E, "NUL"),
    ("batch-pause-unknown", lambda c, w: batch_pause(c, "nope"), errors.NotFound, "nope"),
    ("batch-signal-kind", lambda c, w: batch_signal(c, "b", "explode"), E, "explode"),
    # task_add_v1
    ("add-null-command", raw("SELECT scitq.task_add_v1('b', NULL)"), E, "command"),
    (
        "add-negative-retries",
        raw("SELECT scitq.task_add_v1('b', 'x', p_retries => -3)"),
        E,
        "retries",
    ),
    # task actions
    ("signal-kind", lambda c, w: task_signal(c, [w.task], "explode"), E, "explode"),
    ("signal-kind-null", raw("SELECT scitq.task_signal_v1(ARRAY[1::bigint], NULL)"), E, "kind"),
    (
        "cancel-huge-id",
        raw("SELECT scitq.task_cancel_v1(ARRAY[%s::numeric::bigint])", BIG),
        E,
        "bigint",
    ),
    # recruiter_set_v1 (admin): every number, the provider name
    ("recruiter-max-zero", raw(f"{REC}, 0)"), E, "maximum workers"),
    ("recruiter-max-negative", raw(f"{REC}, -5)"), E, "maximum workers"),
    ("recruiter-min-above-max", raw(f"{REC}, 2, p_min_workers => 3)"), E, "minimum workers"),
    ("recruiter-concurrency-zero", raw(f"{REC}, 2, p_concurrency => 0)"), E, "concurrency"),
    ("recruiter-prefetch-negative", raw(f"{REC}, 2, p_prefetch => -1)"), E, "prefetch"),
    (
        "recruiter-tasks-per-worker",
        raw(f"{REC}, 2, p_tasks_per_worker => 0)"),
        E,
        "tasks per worker",
    ),
    ("recruiter-rank-zero", raw(f"{REC}, 2, p_rank => 0)"), E, "rank"),
    (
        "recruiter-provider",
        raw("SELECT scitq.recruiter_set_v1('b', 'Bad Name; --', 2)"),
        E,
        "provider",
    ),
    ("recruiter-batch-slash", raw("SELECT scitq.recruiter_set_v1('a/b', 'local', 2)"), E, "batch"),
    # web_user_set_v1 (admin)
    (
        "web-user-empty",
        raw("SELECT scitq.web_user_set_v1('', 'pbkdf2:x', 'admin')"),
        E,
        "user name",
    ),
    ("web-user-role", raw("SELECT scitq.web_user_set_v1('u', 'pbkdf2:x', 'root')"), E, "role"),
    (
        "web-user-clear-password",
        raw("SELECT scitq.web_user_set_v1('u', 'hunter2', 'admin')"),
        E,
        "hashed",
    ),
    # worker_register_v1
    ("register-empty-name", lambda c, w: worker_register(c, ""), E, "worker name"),
    ("register-control-name", lambda c, w: worker_register(c, "a\tb"), E, "worker name"),
    ("register-nul-name", lambda c, w: worker_register(c, "a\x00b"), E, "NUL"),
    (
        "register-concurrency-negative",
        lambda c, w: worker_register(c, "n", concurrency=-1),
        E,
        "concurrency",
    ),
    (
        "register-concurrency-huge",
        lambda c, w: worker_register(c, "n", concurrency=BIG),
        E,
        "out of range",
    ),
    (
        "register-prefetch-negative",
        lambda c, w: worker_register(c, "n", prefetch=-1),
        E,
        "prefetch",
    ),
    (
        "register-lease-zero",
        lambda c, w: worker_register(c, "n", lease_seconds=0),
        E,
        "lease",
    ),
    (
        "register-lease-negative",
        lambda c, w: worker_register(c, "n", lease_seconds=-60),
        E,
        "lease",
    ),
    # worker_update_v1
    (
        "update-concurrency-negative",
        lambda c, w: worker_update(c, w.worker, concurrency=-1),
        E,
        "concurrency",
    ),
    (
        "update-prefetch-negative",
        lambda c, w: worker_update(c, w.worker, prefetch=-2),
        E,
        "prefetch",
    ),
    (
        "update-concurrency-huge",
        lambda c, w: worker_update(c, w.worker, concurrency=BIG),
        E,
        "out of range",
    ),
    (
        "update-unknown-worker",
        lambda c, w: worker_update(c, 987654, concurrency=1),
        errors.NotFound,
        "987654",
    ),
    # task_claim_v1
    ("claim-negative", lambda c, w: task_claim(c, w.worker, -1), E, "claim limit"),
    ("claim-null", raw("SELECT * FROM scitq.task_claim_v1(1, NULL)"), E, "claim limit"),
    ("claim-unknown-worker", lambda c, w: task_claim(c, -5, 1), errors.NotFound, "-5"),
    # worker_heartbeat_v1
    ("heartbeat-unknown", lambda c, w: worker_heartbeat(c, 0), errors.NotFound, "0"),
    # execution_set_phase_v1
    (
        "phase-bogus",
        lambda c, w: execution_set_phase(c, w.worker, w.execution, "dancing"),
        E,
        "dancing",
    ),
    (
        "phase-finished",
        lambda c, w: execution_set_phase(c, w.worker, w.execution, "succeeded"),
        E,
        "phase",
    ),
    # execution_append_output_v1
    (
        "output-negative-seq",
        lambda c, w: execution_append_output(c, w.worker, [(w.execution, -1, "stdout", "x")]),
        E,
        "seq",
    ),
    (
        "output-stream",
        lambda c, w: execution_append_output(c, w.worker, [(w.execution, 0, "stdin", "x")]),
        E,
        "stdin",
    ),
    (
        "output-unknown-execution",
        lambda c, w: execution_append_output(c, w.worker, [(987654, 0, "stdout", "x")]),
        errors.ExecutionNotLive,
        "987654",
    ),
    (
        "output-ragged-arrays",
        raw(
            "SELECT scitq.execution_append_output_v1(1, ARRAY[1::bigint, 1], ARRAY[0], "
            "ARRAY['stdout']::scitq.output_stream[], ARRAY['a', 'b'])"
        ),
        E,
        "same length",
    ),
    # execution_finish_v1
    ("finish-not-array", raw("SELECT * FROM scitq.execution_finish_v1(1, '{}')"), E, "array"),
    (
        "finish-no-id",
        lambda c, w: execution_finish(c, w.worker, [{"return_code": 0}]),
        E,
        "execution_id",
    ),
    (
        "finish-class",
        lambda c, w: execution_finish(
            c, w.worker, [{"execution_id": w.execution, "return_code": 1, "failure_class": "bad"}]
        ),
        E,
        "failure_class",
    ),
    (
        "finish-negative-rss",
        lambda c, w: execution_finish(
            c, w.worker, [{"execution_id": w.execution, "return_code": 0, "peak_rss_bytes": -1}]
        ),
        E,
        "negative",
    ),
    (
        "finish-huge-return-code",
        lambda c, w: execution_finish(
            c, w.worker, [{"execution_id": w.execution, "return_code": BIG}]
        ),
        E,
        "out of range",
    ),
]


@pytest.mark.parametrize(
    ("call", "expected", "fragment"),
    [pytest.param(call, expected, fragment, id=name) for name, call, expected, fragment in CASES],
)
def test_bad_argument_is_refused_clearly_and_changes_nothing(
    conn: psycopg.Connection[Any],
    world: World,
    call: Call,
    expected: type[Exception],
    fragment: str,
) -> None:
    before = snapshot(conn)
    with pytest.raises(expected) as info:
        call(conn, world)
    message = str(info.value)
    assert "\n" not in message, message
    assert fragment.lower() in message.lower(), message
    assert "Traceback" not in message
    assert snapshot(conn) == before


def test_huge_command_is_stored_intact(conn: psycopg.Connection[Any]) -> None:
    """2 MiB of command text is stored as given (the agent runs it or fails it clearly)."""
    (row,) = task_submit(conn, "b", [{"command": HUGE_TEXT, "name": "n" * 100_000}])
    stored = conn.execute("SELECT command, name FROM scitq.task WHERE id = %s", (row["id"],))
    assert stored.fetchone() == (HUGE_TEXT, "n" * 100_000)


def test_output_with_nul_and_invalid_utf8_is_stored_escaped(
    conn: psycopg.Connection[Any], world: World
) -> None:
    execution_append_output(
        conn,
        world.worker,
        [
            (world.execution, 0, "stdout", b"a\x00b\xff\xfec\n"),
            (world.execution, 1, "stderr", "\x00"),
        ],
    )
    texts = [t for (t,) in conn.execute("SELECT text FROM scitq.task_log ORDER BY seq")]
    assert len(texts) == 2
    assert all("\x00" not in t for t in texts)
    assert texts[0].startswith("a") and texts[0].endswith("c\n") and len(texts[0]) > 4


def test_submit_refusal_is_all_or_nothing(conn: psycopg.Connection[Any]) -> None:
    """A bad task at position 3 names its position; the two good ones are not inserted."""
    before = snapshot(conn)
    tasks = [{"command": "true"}, {"command": "true"}, {"command": "true", "retries": -1}]
    with pytest.raises(errors.InvalidArgument, match="task #3"):
        task_submit(conn, "b", tasks)
    assert snapshot(conn) == before
    assert json.dumps(tasks)  # the input itself was valid JSON


def test_accepted_extremes_are_harmless(conn: psycopg.Connection[Any]) -> None:
    """Huge delays and timeouts are stored; the back-off is capped and the scheduler's
    timeout sweep still works (it once overflowed interval arithmetic on such a task)."""
    task_submit(
        conn,
        "b",
        [
            {
                "command": "true",
                "retries": 1,
                "retry_delay_seconds": 1e300,
                "run_timeout_seconds": 1e300,
                "download_timeout_seconds": 1e300,
            }
        ],
    )
    worker = worker_register(conn, "w", batches=["b"], concurrency=2)["id"]
    (claim,) = task_claim(conn, worker, 1)
    execution_set_phase(conn, worker, claim["execution_id"], "running")
    assert execution_overdue(conn, grace_seconds=60) == []
    execution_finish(conn, worker, [{"execution_id": claim["execution_id"], "return_code": 1}])
    delay = conn.execute("SELECT available_at - now() FROM scitq.task").fetchone()
    assert delay is not None and delay[0].total_seconds() <= 3600


def test_json_scalars_in_text_lists_are_stored_as_text(conn: psycopg.Connection[Any]) -> None:
    task_submit(conn, "b", [{"command": "true", "tags": [1, True]}])
    assert conn.execute("SELECT tags FROM scitq.task").fetchone() == (["1", "true"],)


# Gaps these tests found, fixed in migration 0003: each is now refused with the field named.
SQL_GAPS = [
    pytest.param(
        lambda c: worker_register(c, "n", lease_seconds=float("inf")),
        "lease",
        id="register-lease-infinite",
    ),
    pytest.param(
        lambda c: worker_register(c, "n", lease_seconds=float("nan")),
        "lease",
        id="register-lease-nan",
    ),
    pytest.param(
        lambda c: worker_register(c, "n", batches=["a/b", ""]),
        "batch",
        id="register-batch-names",
    ),
    pytest.param(
        lambda c: worker_register(c, "n", cpu_count=-4),
        "cpu",
        id="register-cpu-negative",
    ),
    pytest.param(
        lambda c: task_submit(c, "b", [{"command": "true", "env": {"A=B": "x"}}]),
        "env",
        id="env-name-with-equals",
    ),
]


@pytest.mark.parametrize(("call", "fragment"), SQL_GAPS)
def test_sql_gap(conn: psycopg.Connection[Any], call: Any, fragment: str) -> None:
    before = snapshot(conn)
    with pytest.raises(errors.InvalidArgument, match=fragment):
        call(conn)
    assert snapshot(conn) == before


def test_huge_concurrency_and_prefetch_still_claim(conn: psycopg.Connection[Any]) -> None:
    task_submit(conn, "b", [{"command": "true"}])
    worker = worker_register(conn, "w", batches=["b"])["id"]
    worker_update(conn, worker, concurrency=INT_MAX, prefetch=INT_MAX)
    assert len(task_claim(conn, worker, 10)) == 1
