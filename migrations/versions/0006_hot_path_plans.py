"""short tasks at the speed of the machine (issue 17): the agent's hot path planned once
per session, on indexes only; read-ahead for short tasks

The claim, the phase report and the finish (task_claim_v1, execution_set_phase_v2,
execution_finish_v1) keep generic plans restricted to index scans and nested loops, and
batch_count_add becomes PL/pgSQL so that its statement is planned once per session. A
claim asked for more than the free slots holds up to 8 x concurrency tasks when the
worker's tasks are short (task_short_on_worker, new), as batch_duration now also sums the
commands' own wall time (run_total_seconds, run_max_seconds: filled from the executions
for the rows already there). Then the SQL files of migrations/sql/0006/ are executed;
downgrading drops what 0006 adds and re-executes the previous version of its files.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from scitq.db.migrate import rerun_previous_sql, run_frozen_sql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in ("run_total_seconds", "run_max_seconds"):
        op.add_column(
            "batch_duration",
            sa.Column(column, sa.Double(), server_default=sa.text("0"), nullable=False),
            schema="scitq",
        )
    op.execute(BACKFILL_RUN_SECONDS)
    run_frozen_sql(op.get_bind(), "0006")


def downgrade() -> None:
    op.execute(DROP_ROUTINES)
    rerun_previous_sql(op.get_bind(), "0006")
    op.drop_column("batch_duration", "run_max_seconds", schema="scitq")
    op.drop_column("batch_duration", "run_total_seconds", schema="scitq")


BACKFILL_RUN_SECONDS = """
UPDATE scitq.batch_duration d
SET run_total_seconds = s.total, run_max_seconds = s.max
FROM (
    SELECT t.batch_id, e.worker_name, sum(coalesce(e.wall_seconds, 0)) AS total,
           max(coalesce(e.wall_seconds, 0)) AS max
    FROM scitq.execution e
    JOIN scitq.task t ON t.id = e.task_id
    WHERE e.status = 'succeeded'
    GROUP BY t.batch_id, e.worker_name
) s
WHERE s.batch_id = d.batch_id
  AND s.worker_name = d.worker_name
"""


# What 0006 adds; the previous versions of its files re-create the rest.
DROP_ROUTINES = """
DROP FUNCTION IF EXISTS scitq.task_short_on_worker(scitq.worker, bigint[]);
"""
