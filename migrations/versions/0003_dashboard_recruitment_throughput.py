"""dashboard users, cloud recruitment, agent throughput, listing indexes

One revision for the second round of work; each part adds its table changes in its own
section below and its routines to DROP_ROUTINES. Then the frozen copy of every function
file in migrations/sql/0003/ is executed (the complete set, as 0001 and 0002 do).
Downgrading drops what 0003 added and re-executes 0002's frozen files.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from scitq.db.schema import run_frozen_sql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # -- dashboard (issue 6) --
    # -- recruitment (issue 9) --
    # -- agent throughput and listing indexes (issues 3, 5) --
    run_frozen_sql(op.get_bind(), "0003")


def downgrade() -> None:
    op.execute(DROP_ROUTINES)
    # -- agent throughput and listing indexes (issues 3, 5) --
    # -- recruitment (issue 9) --
    # -- dashboard (issue 6) --
    run_frozen_sql(op.get_bind(), "0002")


# Views and functions that 0003 adds, dropped before the tables they use.
DROP_ROUTINES = """
SELECT 1;
"""
