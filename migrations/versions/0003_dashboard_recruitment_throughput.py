"""dashboard users, cloud recruitment, agent throughput, listing indexes

One revision for the second round of work; each part adds its table changes in its own
section below and its routines to DROP_ROUTINES. Then the SQL files of
migrations/sql/0003/ (those it changes) are executed. Downgrading drops what 0003 added
and re-executes the previous version of each file 0003 holds.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from scitq.db.migrate import rerun_previous_sql, run_frozen_sql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # -- dashboard (issue 6) --
    op.create_table(
        "web_user",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("name <> '' AND name !~ '[[:cntrl:]]'", name=op.f("web_user_name_check")),
        sa.CheckConstraint("role IN ('admin', 'viewer')", name=op.f("web_user_role_check")),
        sa.PrimaryKeyConstraint("id", name=op.f("web_user_pkey")),
        sa.UniqueConstraint("name", name=op.f("web_user_name_key")),
        schema="scitq",
    )
    op.create_index(
        "execution_finished_at_idx", "execution", ["finished_at"], unique=False, schema="scitq",
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    )
    # -- end dashboard --
    # -- recruitment (issue 9) --
    _upgrade_recruitment()
    # -- agent throughput and listing indexes (issues 3, 5) --
    op.create_index("task_status_idx", "task", ["status"], schema="scitq")
    op.create_index("task_created_at_idx", "task", ["created_at"], schema="scitq")
    op.create_index(
        "execution_worker_name_task_id_idx", "execution", ["worker_name", "task_id"],
        schema="scitq",
    )  # fmt: skip
    run_frozen_sql(op.get_bind(), "0003")


def downgrade() -> None:
    op.execute(DROP_ROUTINES)
    # -- agent throughput and listing indexes (issues 3, 5) --
    op.drop_index("execution_worker_name_task_id_idx", table_name="execution", schema="scitq")
    op.drop_index("task_created_at_idx", table_name="task", schema="scitq")
    op.drop_index("task_status_idx", table_name="task", schema="scitq")
    # -- recruitment (issue 9) --
    _downgrade_recruitment()
    # -- dashboard (issue 6) --
    op.drop_index("execution_finished_at_idx", table_name="execution", schema="scitq")
    op.drop_table("web_user", schema="scitq")
    # -- end dashboard --
    rerun_previous_sql(op.get_bind(), "0003")


# Views and functions that 0003 adds, dropped before the tables they use.
DROP_ROUTINES = """
DROP FUNCTION IF EXISTS scitq.worker_check_batches_v1(text[]);
DROP FUNCTION IF EXISTS scitq.execution_set_phase_v2(bigint, bigint[], scitq.execution_status, timestamptz);
DROP FUNCTION IF EXISTS scitq.web_user_set_v1(text, text, text, timestamptz);
DROP FUNCTION IF EXISTS scitq.web_user_record_login_v1(text, timestamptz);
DROP FUNCTION IF EXISTS scitq.web_user_delete_v1(text);
DROP VIEW IF EXISTS scitq.cloud_operation_overview;
DROP VIEW IF EXISTS scitq.instance_overview;
DROP VIEW IF EXISTS scitq.recruiter_overview;
DROP FUNCTION IF EXISTS scitq.instance_link_workers_v1(timestamptz);
DROP FUNCTION IF EXISTS scitq.cloud_operation_abandon_v1(bigint[], text, timestamptz);
DROP FUNCTION IF EXISTS scitq.cloud_operation_finish_v1(bigint, text, text, double precision, timestamptz);
DROP FUNCTION IF EXISTS scitq.cloud_operation_progress_v1(bigint, text, integer, text, bigint, timestamptz);
DROP FUNCTION IF EXISTS scitq.cloud_operation_claim_v1(integer, timestamptz);
DROP FUNCTION IF EXISTS scitq.worker_forget_v1(bigint, timestamptz);
DROP FUNCTION IF EXISTS scitq.instance_reassign_v1(bigint, bigint);
DROP FUNCTION IF EXISTS scitq.instance_release_v1(bigint, text, timestamptz);
DROP FUNCTION IF EXISTS scitq.instance_request_v1(text, text, integer, integer, integer, text, text, text, bigint, boolean, text, timestamptz);
DROP FUNCTION IF EXISTS scitq.recruiter_delete_v1(bigint);
DROP FUNCTION IF EXISTS scitq.recruiter_update_v1(bigint, text, integer, text, text, text, integer, integer, integer, integer);
DROP FUNCTION IF EXISTS scitq.recruiter_set_v1(text, text, integer, text, text, text, integer, integer, integer, integer, integer);
DROP FUNCTION IF EXISTS scitq.recruiter_check_v1(text, integer, integer, integer, integer, integer, integer);
SELECT 1;
"""


# -- recruitment (issue 9) --------------------------------------------------------------


def _instance_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("recruiter_id", sa.BigInteger(), nullable=True),
        sa.Column("batch", sa.Text(), nullable=True),
        sa.Column("concurrency", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("prefetch", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("is_permanent", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("active_at", sa.DateTime(timezone=True), nullable=True),
    )


def _operation_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )


def _upgrade_recruitment() -> None:
    op.create_index(
        "recruiter_batch_id_rank_idx", "recruiter", ["batch_id", "rank"], unique=True,
        schema="scitq",
    )  # fmt: skip
    for column in _instance_columns():
        op.add_column("instance", column, schema="scitq")
    op.create_foreign_key(
        op.f("instance_recruiter_id_fkey"), "instance", "recruiter", ["recruiter_id"], ["id"],
        source_schema="scitq", referent_schema="scitq", ondelete="SET NULL",
    )  # fmt: skip
    op.create_check_constraint(
        op.f("instance_concurrency_check"), "instance", "concurrency >= 1", schema="scitq"
    )
    op.create_check_constraint(
        op.f("instance_prefetch_check"), "instance", "prefetch >= 0", schema="scitq"
    )
    op.create_index(
        "instance_name_live_idx", "instance", ["name"], unique=True, schema="scitq",
        postgresql_where=sa.text("status <> 'deleted'"),
    )  # fmt: skip
    for column in _operation_columns():
        op.add_column("cloud_operation", column, schema="scitq")
    op.create_check_constraint(
        op.f("cloud_operation_error_class_check"), "cloud_operation",
        "error_class IN ('quota', 'auth', 'capacity', 'transient', 'config', 'unknown')",
        schema="scitq",
    )  # fmt: skip
    op.create_index(
        "cloud_operation_status_idx", "cloud_operation", ["status"], schema="scitq",
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )  # fmt: skip


def _downgrade_recruitment() -> None:
    op.drop_index("cloud_operation_status_idx", table_name="cloud_operation", schema="scitq")
    op.drop_constraint(op.f("cloud_operation_error_class_check"), "cloud_operation", schema="scitq")
    for column in _operation_columns():
        op.drop_column("cloud_operation", column.name, schema="scitq")
    op.drop_index("instance_name_live_idx", table_name="instance", schema="scitq")
    op.drop_constraint(op.f("instance_prefetch_check"), "instance", schema="scitq")
    op.drop_constraint(op.f("instance_concurrency_check"), "instance", schema="scitq")
    op.drop_constraint(op.f("instance_recruiter_id_fkey"), "instance", schema="scitq")
    for column in _instance_columns():
        op.drop_column("instance", column.name, schema="scitq")
    op.drop_index("recruiter_batch_id_rank_idx", table_name="recruiter", schema="scitq")
