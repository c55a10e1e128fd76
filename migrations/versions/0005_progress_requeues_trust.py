"""progress reads, free requeues, agent roles bound to their worker; web sessions

One revision for this round of work; each part keeps its table changes in its own
commented block below and its routines in DROP_ROUTINES. Then the SQL files of
migrations/sql/0005/ (those it changes) are executed. Downgrading drops what 0005 added
and re-executes the previous version of each file 0005 holds.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from scitq.db.migrate import rerun_previous_sql, run_frozen_sql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # -- worker metrics, runtime failures (issue 18 points 2, 4): first, because adding an
    # enum value commits on its own (autocommit block), and the rest is then one transaction
    _upgrade_worker_metrics()
    # -- end worker metrics --
    # -- progress reads (issue 20) --
    op.create_table(
        "batch_duration",
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("worker_name", sa.Text(), nullable=False),
        sa.Column("succeeded", sa.BigInteger(), nullable=False),
        sa.Column("total_seconds", sa.Double(), nullable=False),
        sa.Column("max_seconds", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["scitq.batch.id"], name=op.f("batch_duration_batch_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("batch_id", "worker_name", name=op.f("batch_duration_pkey")),
        schema="scitq",
    )  # fmt: skip
    # the durations of the successes so far, as execution_finish_v1 keeps them from now on
    op.execute(BACKFILL_DURATIONS)
    # -- end progress reads --
    # -- free requeues, agent roles bound to their worker (issue 15 points 1, 4) --
    _upgrade_requeues_and_agent_roles()
    # -- end free requeues, agent roles --
    # -- web sessions and login throttling (issue 15) --
    _upgrade_web_sessions()
    # -- end web sessions --
    # -- partitions, retention, per-batch counters (issue 16 point 4) --
    _upgrade_partitions()
    # -- end partitions --
    # -- task edit, rerun and cache (issue 18 points 5, 6) --
    _upgrade_task_edit_and_cache()
    # -- end task edit, rerun and cache --
    run_frozen_sql(op.get_bind(), "0005")
    # -- partitions (issue 16 point 4): the rows, once the partitions exist --
    op.execute(PARTITIONS_FILL)
    # -- end partitions --


def downgrade() -> None:
    op.execute(DROP_ROUTINES)
    # -- task edit, rerun and cache (issue 18 points 5, 6) --
    op.drop_column("task_event", "change", schema="scitq")
    op.drop_column("execution", "cached_from_execution_id", schema="scitq")
    op.drop_column("execution", "output_manifest", schema="scitq")
    op.drop_column("execution", "input_fingerprint", schema="scitq")
    op.drop_index("execution_cache_key_idx", table_name="execution", schema="scitq")
    op.drop_column("execution", "cache_key", schema="scitq")
    op.drop_column("task", "cache_key", schema="scitq")
    op.drop_column("task", "use_cache", schema="scitq")
    # -- end task edit, rerun and cache --
    # -- partitions, retention, per-batch counters (issue 16 point 4) --
    op.execute(PARTITIONS_UNDO)
    # -- end partitions --
    # -- worker metrics (issue 18 point 4); the failure class 'runtime' stays in its type --
    op.drop_table("worker_metric", schema="scitq")
    # -- end worker metrics --
    # -- web sessions and login throttling (issue 15) --
    op.drop_table("web_login_attempt", schema="scitq")
    op.drop_table("web_session", schema="scitq")
    # -- end web sessions --
    # -- free requeues, agent roles bound to their worker (issue 15 points 1, 4) --
    op.drop_table("agent_role", schema="scitq")
    op.drop_constraint(op.f("batch_requeues_check"), "batch", schema="scitq")
    op.drop_column("batch", "requeues", schema="scitq")
    op.drop_constraint(op.f("task_requeues_check"), "task", schema="scitq")
    op.drop_column("task", "requeue_count", schema="scitq")
    op.drop_column("task", "requeues", schema="scitq")
    # -- end free requeues, agent roles --
    # -- progress reads (issue 20) --
    op.drop_table("batch_duration", schema="scitq")
    # -- end progress reads --
    rerun_previous_sql(op.get_bind(), "0005")


BACKFILL_DURATIONS = """
INSERT INTO scitq.batch_duration (batch_id, worker_name, succeeded, total_seconds, max_seconds)
SELECT t.batch_id, e.worker_name, count(*),
       sum(extract(epoch FROM e.finished_at - e.assigned_at)),
       max(extract(epoch FROM e.finished_at - e.assigned_at))
FROM scitq.execution e
JOIN scitq.task t ON t.id = e.task_id
WHERE e.status = 'succeeded'
GROUP BY t.batch_id, e.worker_name
"""

# Views and functions that 0005 adds or whose columns it changes, dropped before the
# tables they use; the previous files re-create the older versions.
DROP_ROUTINES = """
-- progress reads (issue 20)
DROP VIEW IF EXISTS scitq.batch_progress;
DROP FUNCTION IF EXISTS scitq.batch_count_tasks_v1(bigint);
-- free requeues (issue 15 point 1): task_overview gains columns
DROP VIEW IF EXISTS scitq.task_overview;
DROP FUNCTION IF EXISTS scitq.batch_set_requeues_v1(text, integer);
-- agent roles bound to their worker (issue 15 point 4)
DROP FUNCTION IF EXISTS scitq.worker_role_set_batches_v1(text, text[]);
DROP FUNCTION IF EXISTS scitq.worker_create_role_v2(text, text, text, text[]);
DROP FUNCTION IF EXISTS scitq.worker_check_role(text, text[]);
-- web sessions and login throttling (issue 15)
DROP FUNCTION IF EXISTS scitq.web_session_start_v1(bytea, text, bigint, text, timestamptz);
DROP FUNCTION IF EXISTS scitq.web_session_touch_v1(bytea, integer, integer, timestamptz);
DROP FUNCTION IF EXISTS scitq.web_session_end_v1(bytea, text, timestamptz);
DROP FUNCTION IF EXISTS scitq.web_session_end_user_v1(text, text, timestamptz);
DROP FUNCTION IF EXISTS scitq.web_login_attempt_v1(text, text, integer, integer, integer, timestamptz);
-- partitions, retention, per-batch counters (issue 16 point 4)
DROP VIEW IF EXISTS scitq.partition_overview;
DROP VIEW IF EXISTS scitq.task_log;
DROP FUNCTION IF EXISTS scitq.partition_prune_v1(interval, interval, interval, timestamptz);
DROP FUNCTION IF EXISTS scitq.partition_ensure_v1(bigint, integer, integer, integer, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS scitq.partition_create(regclass, text, text, text, text);
DROP FUNCTION IF EXISTS scitq.partition_bounds(regclass);
DROP FUNCTION IF EXISTS scitq.batch_count_compact_v1();
DROP TRIGGER IF EXISTS task_count_delete ON scitq.task;
DROP FUNCTION IF EXISTS scitq.task_count_delete_v1();
DROP FUNCTION IF EXISTS scitq.batch_count_add(bigint[], scitq.task_status[], bigint[], scitq.task_status[]);
-- task edit, rerun and cache (issue 18 points 5, 6); execution_overview gains a column
DROP VIEW IF EXISTS scitq.execution_overview;
DROP FUNCTION IF EXISTS scitq.task_update_v1(bigint[], jsonb, boolean, text, timestamptz);
DROP FUNCTION IF EXISTS scitq.task_rerun_v1(bigint[], timestamptz);
DROP FUNCTION IF EXISTS scitq.task_restart(bigint[], text, timestamptz);
DROP FUNCTION IF EXISTS scitq.task_check_submission(jsonb, text);
DROP TRIGGER IF EXISTS task_cache_key ON scitq.task;
DROP FUNCTION IF EXISTS scitq.task_cache_key_set_v1();
DROP FUNCTION IF EXISTS scitq.task_cache_key(text, boolean, text, text, text[], text[], text, jsonb);
DROP FUNCTION IF EXISTS scitq.task_claim_v2(bigint, integer, timestamptz);
DROP FUNCTION IF EXISTS scitq.execution_cache_candidates(text, bigint);
DROP FUNCTION IF EXISTS scitq.execution_record_cache_v1(bigint, bigint, text, jsonb, bigint, timestamptz);
-- worker metrics (issue 18 point 4)
DROP VIEW IF EXISTS scitq.worker_metrics;
DROP FUNCTION IF EXISTS scitq.worker_heartbeat_v2(bigint, bigint[], bigint[], jsonb, timestamptz);
DROP FUNCTION IF EXISTS scitq.worker_record_metrics(bigint, jsonb, timestamptz);
DROP FUNCTION IF EXISTS scitq.worker_metric_figure(jsonb, text);
SELECT 1;
"""


# -- free requeues, agent roles bound to their worker (issue 15 points 1, 4) -------------

BIND_EXISTING_AGENT_ROLES = """
INSERT INTO scitq.agent_role (role_name, worker_name)
SELECT w.login_role, min(w.name)
FROM scitq.worker w
JOIN pg_roles r ON r.rolname = w.login_role
JOIN pg_auth_members m ON m.member = r.oid
JOIN pg_roles agent ON agent.oid = m.roleid AND agent.rolname = 'scitq_agent'
WHERE NOT r.rolsuper
GROUP BY w.login_role
HAVING count(*) = 1
"""


def _upgrade_requeues_and_agent_roles() -> None:
    """Free requeues per task (and a default per batch); the roles made for one worker."""
    op.add_column(
        "task", sa.Column("requeues", sa.Integer(), server_default=sa.text("3"), nullable=False),
        schema="scitq",
    )  # fmt: skip
    op.add_column(
        "task",
        sa.Column("requeue_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema="scitq",
    )
    op.create_check_constraint(op.f("task_requeues_check"), "task", "requeues >= 0", schema="scitq")
    op.add_column("batch", sa.Column("requeues", sa.Integer(), nullable=True), schema="scitq")
    op.create_check_constraint(
        op.f("batch_requeues_check"), "batch", "requeues >= 0", schema="scitq"
    )
    op.create_table(
        "agent_role",
        sa.Column("role_name", sa.Text(), nullable=False),
        sa.Column("worker_name", sa.Text(), nullable=False),
        sa.Column("batches", sa.ARRAY(sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("role_name", name=op.f("agent_role_pkey")),
        sa.UniqueConstraint("worker_name", name=op.f("agent_role_worker_name_key")),
        schema="scitq",
    )  # fmt: skip
    # roles made by `db create-role --agent` before: the scitq_agent member that owns
    # exactly one worker is bound to it (serving any batch, as before)
    op.execute(BIND_EXISTING_AGENT_ROLES)


def _upgrade_web_sessions() -> None:
    """Sessions kept on the server (ended by logout, a new password or role, an admin)
    and the login attempts that throttle password guessing."""
    op.create_table(
        "web_session",
        sa.Column("id", sa.LargeBinary(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("octet_length(id) = 32", name=op.f("web_session_id_check")),
        sa.CheckConstraint("(ended_at IS NULL) = (end_reason IS NULL)", name=op.f("web_session_ended_check")),
        sa.CheckConstraint(
            "end_reason IN ('logout', 'password', 'role', 'admin', 'idle', 'expired')",
            name=op.f("web_session_end_reason_check"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["scitq.web_user.id"], name=op.f("web_session_user_id_fkey"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("web_session_pkey")),
        schema="scitq",
    )  # fmt: skip
    op.create_index("web_session_user_id_idx", "web_session", ["user_id"], schema="scitq")
    op.create_table(
        "web_login_attempt",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('failed', 'succeeded', 'throttled')", name=op.f("web_login_attempt_outcome_check"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("web_login_attempt_pkey")),
        schema="scitq",
    )  # fmt: skip
    op.create_index("web_login_attempt_user_name_at_idx", "web_login_attempt", ["user_name", "at"],
                    schema="scitq")  # fmt: skip
    op.create_index("web_login_attempt_address_at_idx", "web_login_attempt", ["address", "at"],
                    schema="scitq")  # fmt: skip
    op.create_index("web_login_attempt_at_idx", "web_login_attempt", ["at"], schema="scitq")


# -- partitions, retention, per-batch counters (issue 16 point 4) -------------------------
# execution_output and task_event become partitioned tables (65_retention.sql creates the
# partitions): the old tables are renamed, the new ones created, and once the SQL files
# have created the partitions the rows are copied over and the old tables dropped. The
# downgrade copies them back into plain tables as 0001 made them.

def _move_not_nulls(suffix: str) -> str:
    """PostgreSQL 18 names NOT NULL constraints after their table: move those of the
    renamed ``execution_output_<suffix>`` and ``task_event_<suffix>`` out of the way of the
    new tables' (before 18 they are not constraints and there is nothing to do)."""
    tables = f"'scitq.execution_output_{suffix}'::regclass, 'scitq.task_event_{suffix}'::regclass"
    return f"""DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.conrelid::regclass AS tbl, c.conname
        FROM pg_constraint c
        WHERE c.conrelid IN ({tables})
          AND c.contype = 'n'
          AND c.conislocal
    LOOP
        EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', r.tbl, r.conname, 'moved_' || r.conname);
    END LOOP;
END;
$$;
"""


PARTITIONS_RENAME = """
DROP VIEW IF EXISTS scitq.task_log;
ALTER TABLE scitq.execution_output RENAME TO execution_output_unpartitioned;
ALTER INDEX scitq.execution_output_pkey RENAME TO execution_output_unpartitioned_pkey;
ALTER TABLE scitq.task_event RENAME TO task_event_unpartitioned;
ALTER INDEX scitq.task_event_pkey RENAME TO task_event_unpartitioned_pkey;
ALTER INDEX scitq.task_event_task_id_id_idx RENAME TO task_event_unpartitioned_task_id_id_idx;

""" + _move_not_nulls("unpartitioned")

PARTITIONS_FILL = """
SELECT count(*) FROM scitq.partition_ensure_v1(
    p_events_since => (SELECT min(at) FROM scitq.task_event_unpartitioned)
);
INSERT INTO scitq.execution_output (execution_id, seq, retained, stream, at, text)
SELECT execution_id, seq, false, stream, at, text FROM scitq.execution_output_unpartitioned;
INSERT INTO scitq.task_event (id, task_id, from_status, to_status, at)
SELECT id, task_id, from_status, to_status, at FROM scitq.task_event_unpartitioned;
ALTER SEQUENCE scitq.task_event_id_seq OWNED BY scitq.task_event.id;
DROP TABLE scitq.execution_output_unpartitioned;
DROP TABLE scitq.task_event_unpartitioned;
INSERT INTO scitq.batch_task_count (batch_id, status, slot, n)
SELECT batch_id, status, 0, count(*) FROM scitq.task GROUP BY batch_id, status;
"""

PARTITIONS_UNDO = """
ALTER TABLE scitq.execution_output RENAME TO execution_output_partitioned;
ALTER INDEX scitq.execution_output_pkey RENAME TO execution_output_partitioned_pkey;
ALTER TABLE scitq.task_event RENAME TO task_event_partitioned;
ALTER INDEX scitq.task_event_pkey RENAME TO task_event_partitioned_pkey;
ALTER INDEX scitq.task_event_task_id_id_idx RENAME TO task_event_partitioned_task_id_id_idx;

""" + _move_not_nulls("partitioned") + """
CREATE TABLE scitq.execution_output (
    execution_id bigint NOT NULL,
    seq integer NOT NULL,
    stream scitq.output_stream NOT NULL,
    at timestamp with time zone NOT NULL,
    text text NOT NULL,
    CONSTRAINT execution_output_seq_check CHECK (seq >= 0),
    CONSTRAINT execution_output_execution_id_fkey FOREIGN KEY (execution_id)
        REFERENCES scitq.execution (id) ON DELETE CASCADE,
    CONSTRAINT execution_output_pkey PRIMARY KEY (execution_id, seq)
);
INSERT INTO scitq.execution_output (execution_id, seq, stream, at, text)
SELECT execution_id, seq, stream, at, text FROM scitq.execution_output_partitioned
ON CONFLICT DO NOTHING;
CREATE TABLE scitq.task_event (
    id bigint NOT NULL DEFAULT nextval('scitq.task_event_id_seq'::regclass),
    task_id bigint NOT NULL,
    from_status scitq.task_status,
    to_status scitq.task_status NOT NULL,
    at timestamp with time zone NOT NULL,
    CONSTRAINT task_event_pkey PRIMARY KEY (id)
);
CREATE INDEX task_event_task_id_id_idx ON scitq.task_event (task_id, id);
INSERT INTO scitq.task_event (id, task_id, from_status, to_status, at)
SELECT id, task_id, from_status, to_status, at FROM scitq.task_event_partitioned;
ALTER SEQUENCE scitq.task_event_id_seq OWNED BY scitq.task_event.id;
DROP TABLE scitq.execution_output_partitioned;
DROP TABLE scitq.task_event_partitioned;
DROP TABLE scitq.batch_task_count;
"""


def _upgrade_partitions() -> None:
    op.execute(PARTITIONS_RENAME)
    op.create_table(
        "execution_output",
        sa.Column("execution_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("retained", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("stream", postgresql.ENUM(name="output_stream", schema="scitq", create_type=False), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.CheckConstraint("seq >= 0", name=op.f("execution_output_seq_check")),
        sa.ForeignKeyConstraint(["execution_id"], ["scitq.execution.id"],
                                name=op.f("execution_output_execution_id_fkey"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("execution_id", "seq", "retained", name=op.f("execution_output_pkey")),
        schema="scitq",
        postgresql_partition_by="RANGE (execution_id)",
    )  # fmt: skip
    task_status = postgresql.ENUM(name="task_status", schema="scitq", create_type=False)
    op.create_table(
        "task_event",
        sa.Column("id", sa.BigInteger(), server_default=sa.text("nextval('scitq.task_event_id_seq'::regclass)"),
                  nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("from_status", task_status, nullable=True),
        sa.Column("to_status", task_status, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", "at", name=op.f("task_event_pkey")),
        schema="scitq",
        postgresql_partition_by="RANGE (at)",
    )  # fmt: skip
    op.create_index("task_event_task_id_id_idx", "task_event", ["task_id", "id"], schema="scitq")
    op.create_table(
        "batch_task_count",
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("status", task_status, nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["scitq.batch.id"], name=op.f("batch_task_count_batch_id_fkey"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_id", "status", "slot", name=op.f("batch_task_count_pkey")),
        schema="scitq",
    )  # fmt: skip
# -- task edit, rerun and cache (issue 18 points 5, 6) -------------------------------------


def _upgrade_task_edit_and_cache() -> None:
    """scitq v1's use_cache (a key per task, the listings of an attempt, cache hits) and
    the edits of tasks in the event log."""
    op.add_column(
        "task", sa.Column("use_cache", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema="scitq",
    )  # fmt: skip
    op.add_column("task", sa.Column("cache_key", sa.Text(), nullable=True), schema="scitq")
    op.add_column("execution", sa.Column("cache_key", sa.Text(), nullable=True), schema="scitq")
    op.create_index("execution_cache_key_idx", "execution", ["cache_key", "id"], schema="scitq",
                    postgresql_where=sa.text("cache_key IS NOT NULL"))  # fmt: skip
    op.add_column("execution", sa.Column("input_fingerprint", sa.Text(), nullable=True),
                  schema="scitq")  # fmt: skip
    op.add_column("execution", sa.Column("output_manifest", JSONB(), nullable=True),
                  schema="scitq")  # fmt: skip
    op.add_column("execution", sa.Column("cached_from_execution_id", sa.BigInteger(), nullable=True),
                  schema="scitq")  # fmt: skip
    op.create_foreign_key(
        op.f("execution_cached_from_execution_id_fkey"), "execution", "execution",
        ["cached_from_execution_id"], ["id"], source_schema="scitq", referent_schema="scitq",
        ondelete="SET NULL",
    )  # fmt: skip
    op.add_column("task_event", sa.Column("change", JSONB(), nullable=True), schema="scitq")
# -- worker metrics, runtime failures (issue 18 points 2, 4) -------------------------------


def _upgrade_worker_metrics() -> None:
    """The failure class of a container runtime that cannot run a task (committed on its
    own: PostgreSQL refuses a new enum value in the transaction that adds it); the host
    metrics the agents send with their heartbeats."""
    with op.get_context().autocommit_block():
        op.execute("ALTER TYPE scitq.failure_class ADD VALUE IF NOT EXISTS 'runtime'")
    op.create_table(
        "worker_metric",
        sa.Column("worker_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(name, sa.Double(), nullable=True) for name in ("load1", "cpu_percent", "iowait_percent")),
        *(sa.Column(name, sa.BigInteger(), nullable=True) for name in (
            "memory_used_bytes", "memory_total_bytes", "disk_free_bytes", "disk_total_bytes",
            "disk_floor_bytes")),
        *(sa.Column(name, sa.Double(), nullable=True) for name in (
            "disk_read_bytes_per_second", "disk_write_bytes_per_second",
            "network_receive_bytes_per_second", "network_send_bytes_per_second")),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["scitq.worker.id"], name=op.f("worker_metric_worker_id_fkey"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("worker_id", "at", name=op.f("worker_metric_pkey")),
        schema="scitq",
    )  # fmt: skip
