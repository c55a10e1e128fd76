"""Least privilege: agents act only through their functions and only for their worker;
readers see only the reporting views."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from scitq import errors
from scitq.db.batch import batch_pause
from scitq.db.execution import (
    execution_append_output,
    execution_expire_leases,
    execution_finish,
    execution_set_phase,
)
from scitq.db.task import task_cancel, task_claim, task_submit
from scitq.db.worker import (
    password_verifier,
    worker_create_role,
    worker_delete,
    worker_heartbeat,
    worker_register,
    worker_role_set_batches,
    worker_stop,
    worker_update,
)

TABLES = [
    "batch",
    "task",
    "task_dependency",
    "task_event",
    "worker",
    "execution",
    "execution_output",
    "signal",
    "recruiter",
    "instance",
    "cloud_operation",
]
VIEWS = [
    "batch_progress",
    "task_overview",
    "worker_overview",
    "execution_overview",
    "execution_stats",
    "task_log",
]


@pytest.fixture
def agent(make_role):
    """Two agent login roles, each with its own connection."""
    _, dsn = make_role("scitq_agent")
    _, other_dsn = make_role("scitq_agent")
    with (
        psycopg.connect(dsn, autocommit=True) as one,
        psycopg.connect(other_dsn, autocommit=True) as two,
    ):
        yield one, two


@pytest.mark.parametrize("table", TABLES)
def test_agent_has_no_table_privilege(agent, table):
    one, _ = agent
    for statement in (
        f"SELECT * FROM scitq.{table}",
        f"DELETE FROM scitq.{table}",
        f"UPDATE scitq.{table} SET created_at = now()"
        if table
        not in ("task_dependency", "task_event", "execution", "execution_output", "signal", "batch")
        else f"TRUNCATE scitq.{table}",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            one.execute(statement)


@pytest.mark.parametrize("view", VIEWS)
def test_agent_cannot_read_views(agent, view):
    one, _ = agent
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        one.execute(f"SELECT * FROM scitq.{view}")


def test_agent_cannot_call_admin_functions(agent):
    one, _ = agent
    for call in (
        lambda: task_submit(one, "b", [{"command": "x"}]),
        lambda: batch_pause(one, "b"),
        lambda: task_cancel(one, [1]),
        lambda: worker_update(one, 1, concurrency=3),
        lambda: execution_expire_leases(one),
    ):
        with pytest.raises(errors.PermissionDenied):
            call()


def test_agent_works_only_for_its_own_worker(conn, agent):
    one, two = agent
    task_submit(conn, "b", [{"command": "x"}, {"command": "y"}])
    mine = worker_register(one, "agent-one", batches=["b"])["id"]
    theirs = worker_register(two, "agent-two", batches=["b"])["id"]
    (claim,) = task_claim(one, mine, 1)
    # the other agent may not claim, heartbeat, write, finish or stop as worker one
    for call in (
        lambda: task_claim(two, mine, 1),
        lambda: worker_heartbeat(two, mine),
        lambda: execution_append_output(two, mine, [(claim["execution_id"], 0, "stdout", "x")]),
        lambda: execution_finish(
            two, mine, [{"execution_id": claim["execution_id"], "return_code": 0}]
        ),
        lambda: execution_set_phase(two, mine, claim["execution_id"], "running"),
        lambda: worker_stop(two, mine),
        lambda: worker_register(two, "agent-one"),
    ):
        with pytest.raises(errors.WorkerNotOwned):
            call()
    # nor through its own worker id
    with pytest.raises(errors.ExecutionNotLive):
        execution_finish(two, theirs, [{"execution_id": claim["execution_id"], "return_code": 0}])
    execution_finish(one, mine, [{"execution_id": claim["execution_id"], "return_code": 0}])
    assert conn.execute(
        "SELECT count(*) FROM scitq.task WHERE status = 'succeeded'"
    ).fetchone() == (1,)


def test_agent_cannot_move_the_clock(conn, agent):
    one, _ = agent
    task_submit(conn, "b", [{"command": "x"}])
    mine = worker_register(one, "agent-one", batches=["b"], lease_seconds=60)["id"]
    far_future = datetime(2999, 1, 1, tzinfo=UTC)
    (claim,) = task_claim(one, mine, 1, now=far_future)
    lease = conn.execute(
        "SELECT lease_expires_at - now() < interval '61 seconds' FROM scitq.execution"
    ).fetchone()
    assert lease == (True,)
    assert claim["lease_expires_at"].year < 2999


def _create_role(conn, worker_name, role, password):
    return worker_create_role(conn, worker_name, role, password_verifier(conn, role, password))


def test_created_agent_role_can_log_in_and_work(conn, db, server_conninfo):
    worker = _create_role(conn, "remote-1", "scitq_t_remote_1", "pw-1234-abcd")
    try:
        assert worker["login_role"] == "scitq_t_remote_1"
        dsn = psycopg.conninfo.make_conninfo(db, user="scitq_t_remote_1", password="pw-1234-abcd")
        with psycopg.connect(dsn, autocommit=True) as agent_conn:
            resumed = worker_register(agent_conn, "remote-1", batches=["b"])
            assert resumed["id"] == worker["id"]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                agent_conn.execute("SELECT * FROM scitq.task")
        with pytest.raises(errors.InvalidArgument, match="exists already"):
            _create_role(conn, "remote-2", "scitq_t_remote_1", "pw")
        with pytest.raises(errors.InvalidArgument, match=r"worker .remote-1. exists already"):
            _create_role(conn, "remote-1", "scitq_t_remote_9", "pw")
        with pytest.raises(errors.InvalidArgument, match="invalid role name"):
            _create_role(conn, "remote-3", "Bad Name; DROP", "pw")
    finally:
        with psycopg.connect(server_conninfo, autocommit=True) as admin:
            admin.execute('DROP ROLE IF EXISTS "scitq_t_remote_1"')


def test_reader_sees_views_only(conn, make_role):
    task_submit(conn, "b", [{"command": "x"}])
    _, dsn = make_role("scitq_reader")
    with psycopg.connect(dsn, autocommit=True) as reader:
        for view in VIEWS:
            reader.execute(f"SELECT * FROM scitq.{view}").fetchall()
        assert reader.execute("SELECT total FROM scitq.batch_progress").fetchone() == (1,)
        for table in TABLES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(f"SELECT * FROM scitq.{table}")
        with pytest.raises(errors.PermissionDenied):
            task_submit(reader, "b", [{"command": "x"}])


def test_admin_role_reads_tables_but_writes_only_through_functions(conn, make_role):
    _, dsn = make_role("scitq_admin")
    with psycopg.connect(dsn, autocommit=True) as admin:
        task_submit(admin, "b", [{"command": "x"}])
        assert admin.execute("SELECT count(*) FROM scitq.task").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin.execute("UPDATE scitq.task SET status = 'succeeded'")


def test_public_has_nothing(conn, make_role):
    _, dsn = make_role(None)
    with psycopg.connect(dsn, autocommit=True) as nobody:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            nobody.execute("SELECT * FROM scitq.batch_progress")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            nobody.execute("SELECT scitq.task_add_v1('b', 'x')")


def test_agent_role_is_bound_to_its_worker_and_batches(conn, db, server_conninfo):
    """A role made by `db create-role --agent` registers its worker only, serving only the
    batches the admin allowed; claims outside them are refused whatever the worker row
    says; a name reserved for such a role cannot be taken by another role (issue 15.4)."""
    suffix = uuid.uuid4().hex[:8]
    role, spare = f"scitq_t_bound_{suffix}", f"scitq_t_spare_{suffix}"
    worker = worker_create_role(
        conn, "bound-1", role, password_verifier(conn, role, "pw-bound-1"), batches=["allowed"]
    )
    worker_create_role(conn, "bound-2", spare, password_verifier(conn, spare, "pw-bound-2"))
    task_submit(conn, "allowed", [{"command": "ok"}])
    task_submit(conn, "secret", [{"command": "cat", "env": {"TOKEN": "do-not-leak"}}])
    dsn = psycopg.conninfo.make_conninfo(db, user=role, password="pw-bound-1")
    try:
        with psycopg.connect(dsn, autocommit=True) as bound:
            # not another name (squatting), not a batch outside those allowed
            with pytest.raises(errors.WorkerNotOwned, match="created for worker 'bound-1'"):
                worker_register(bound, "squatted", batches=["allowed"])
            with pytest.raises(errors.WorkerNotOwned, match="may not serve batch secret"):
                worker_register(bound, "bound-1", batches=["secret"])
            # every batch asked for: it gets the allowed ones only
            resumed = worker_register(bound, "bound-1", batches=[], concurrency=10)
            assert resumed["id"] == worker["id"]
            claimed = task_claim(bound, worker["id"], 10)
            assert [c["batch"] for c in claimed] == ["allowed"]
            # the admin points the worker row at the secret batch: still refused
            worker_update(conn, worker["id"], batches=["secret"])
            assert task_claim(bound, worker["id"], 10) == []
            # until the admin allows that batch for the role
            assert worker_role_set_batches(conn, role, ["allowed", "secret"])["batches"] == [
                "allowed", "secret"]  # fmt: skip
            assert [c["batch"] for c in task_claim(bound, worker["id"], 10)] == ["secret"]
        # a worker name reserved for a role stays reserved after its row is deleted
        spare_id = conn.execute("SELECT id FROM scitq.worker WHERE name = 'bound-2'").fetchone()
        worker_delete(conn, spare_id[0])
        assert conn.execute("SELECT count(*) FROM scitq.worker").fetchone() == (1,)
        with pytest.raises(errors.WorkerNotOwned, match="reserved for database role"):
            worker_register(bound_shared(db, server_conninfo, suffix), "bound-2")
        with pytest.raises(errors.NotFound):
            worker_role_set_batches(conn, "scitq_t_nobody", None)
    finally:
        with psycopg.connect(server_conninfo, autocommit=True) as admin:
            for name in (role, spare, f"scitq_t_shared_{suffix}"):
                admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def bound_shared(db: str, server_conninfo: str, suffix: str) -> psycopg.Connection:
    """A connection of a plain member of scitq_agent (the shared role of a single-user
    machine), which registers any free name."""
    name = f"scitq_t_shared_{suffix}"
    with psycopg.connect(server_conninfo, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD 'pw-shared' IN ROLE scitq_agent")
    shared = psycopg.connect(
        psycopg.conninfo.make_conninfo(db, user=name, password="pw-shared"), autocommit=True
    )
    assert worker_register(shared, "free-name")["name"] == "free-name"
    return shared
