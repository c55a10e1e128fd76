"""A fingerprint of every table of schema scitq, to prove a refused call changed nothing."""

from __future__ import annotations

from typing import Any

import psycopg


def snapshot(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, str]]:
    """Row count and an md5 of every row's text, per table of schema ``scitq``."""
    tables = [
        name
        for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'scitq' ORDER BY tablename"
        )
    ]
    result: dict[str, tuple[int, str]] = {}
    for table in tables:
        row = conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
            f"FROM scitq.{table} t"
        ).fetchone()
        assert row is not None
        result[table] = (int(row[0]), str(row[1]))
    return result
