"""state machine: allowed transitions, one writer per status column

scitq/sql/functions/05_states.sql (new) holds the status classes, the transitions a task
and an execution may make (views scitq.task_transition and scitq.execution_transition)
and the only two functions that write task.status and execution.status; the other files
of migrations/sql/0004/ are rewritten to call them. No table changes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from scitq.db.migrate import rerun_previous_sql, run_frozen_sql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_frozen_sql(op.get_bind(), "0004")


def downgrade() -> None:
    op.execute(DROP_ROUTINES)
    rerun_previous_sql(op.get_bind(), "0004")


# What 0004 adds; the previous versions of its other files re-create the rest.
DROP_ROUTINES = """
DROP FUNCTION IF EXISTS scitq.batch_task_ids(text, scitq.task_status[]);
DROP FUNCTION IF EXISTS scitq.task_requeue(bigint[], scitq.task_status[], timestamptz);
DROP FUNCTION IF EXISTS scitq.task_has_unmet_dependency(bigint);
DROP FUNCTION IF EXISTS scitq.execution_end_of_worker(bigint, text, timestamptz, boolean);
DROP FUNCTION IF EXISTS scitq.execution_end(
    bigint[], scitq.execution_status, text, timestamptz, boolean
);
DROP FUNCTION IF EXISTS scitq.execution_check_phase(
    bigint, bigint[], scitq.execution_status, timestamptz
);
DROP FUNCTION IF EXISTS scitq.execution_move_to_phase(
    bigint[], scitq.execution_status, timestamptz
);
DROP FUNCTION IF EXISTS scitq.task_set_status(
    bigint[], scitq.task_status[], timestamptz, scitq.task_status[], timestamptz[], text[],
    bigint[], boolean
);
DROP FUNCTION IF EXISTS scitq.execution_set_status(
    bigint[], scitq.execution_status[], timestamptz, scitq.execution_status[],
    scitq.failure_class[], text[], integer[], double precision[], double precision[],
    double precision[], bigint[], bigint[], bigint[]
);
DROP FUNCTION IF EXISTS scitq.array_spread(anyarray, integer);
DROP VIEW IF EXISTS scitq.execution_transition;
DROP VIEW IF EXISTS scitq.task_transition;
DROP FUNCTION IF EXISTS scitq.execution_is_live(scitq.execution_status);
DROP FUNCTION IF EXISTS scitq.execution_phases();
DROP FUNCTION IF EXISTS scitq.task_is_held(scitq.task_status);
DROP FUNCTION IF EXISTS scitq.task_is_live(scitq.task_status);
DROP FUNCTION IF EXISTS scitq.task_held_statuses();
DROP FUNCTION IF EXISTS scitq.task_live_statuses();
"""
