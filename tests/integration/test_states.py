"""The enum types of a migrated database hold exactly `scitq.states`' values."""

from __future__ import annotations

from typing import Any

import psycopg

from scitq import states


def test_sql_enums_are_the_states_vocabulary(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        """
        SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE t.typnamespace = 'scitq'::regnamespace
        GROUP BY 1
        """
    ).fetchall()
    in_database = {name: list(values) for name, values in rows}
    expected = {name: [m.value for m in kind] for name, kind in states.SQL_ENUMS.items()}
    assert in_database == expected


def test_live_and_final_sets_partition_the_statuses() -> None:
    assert set(states.TaskStatus) == states.LIVE_TASK_STATUSES | states.FINAL_TASK_STATUSES
    assert not states.LIVE_TASK_STATUSES & states.FINAL_TASK_STATUSES
    assert states.HELD_TASK_STATUSES <= states.LIVE_TASK_STATUSES
    assert set(states.EXECUTION_PHASES) | states.FINAL_EXECUTION_STATUSES == set(
        states.ExecutionStatus
    )
