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

from scitq.db.migrate import rerun_previous_sql, run_frozen_sql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
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
    run_frozen_sql(op.get_bind(), "0005")


def downgrade() -> None:
    op.execute(DROP_ROUTINES)
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
