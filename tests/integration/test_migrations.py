"""Migrations build exactly what the sources describe."""

from __future__ import annotations

import itertools
import json
from typing import Any

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from scitq.db import migrate, models

CATALOG_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default
        FROM information_schema.columns
        WHERE table_schema = 'scitq' AND table_name <> 'alembic_version'
        ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'scitq'::regnamespace
          AND conrelid::regclass::text <> 'scitq.alembic_version' ORDER BY 1, 2""",
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'scitq' AND tablename <> 'alembic_version' ORDER BY 1""",
    "functions": """
        SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid)
        FROM pg_proc p WHERE p.pronamespace = 'scitq'::regnamespace ORDER BY 1""",
    "views": """
        SELECT viewname, definition FROM pg_views WHERE schemaname = 'scitq' ORDER BY 1""",
    "triggers": """
        SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'scitq.%' ORDER BY 1""",
    "enums": """
        SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)::text
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE t.typnamespace = 'scitq'::regnamespace GROUP BY 1 ORDER BY 1""",
    "table_grants": """
        SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants
        WHERE table_schema = 'scitq' AND grantee LIKE 'scitq_%' AND table_name <> 'alembic_version'
        ORDER BY 1, 2, 3""",
    "function_grants": """
        SELECT p.oid::regprocedure::text,
               array_agg(a.grantee::regrole::text ORDER BY a.grantee::regrole::text)::text
        FROM pg_proc p, aclexplode(p.proacl) a
        WHERE p.pronamespace = 'scitq'::regnamespace AND a.privilege_type = 'EXECUTE'
          AND a.grantee <> 0 AND a.grantee::regrole::text LIKE 'scitq_%'
        GROUP BY 1 ORDER BY 1""",
}


def catalog(conninfo: str) -> dict[str, list[Any]]:
    with psycopg.connect(conninfo) as conn:
        return {name: conn.execute(query).fetchall() for name, query in CATALOG_QUERIES.items()}


def test_migrated_database_equals_the_sources(db, empty_db):
    migrate.apply_sources(empty_db)
    migrated, source = catalog(db), catalog(empty_db)
    for part in CATALOG_QUERIES:
        assert migrated[part] == source[part], f"{part} differ between migrations and sources"
    assert len(migrated["functions"]) >= 30
    views = {name for name, _definition in migrated["views"]}
    # the six reporting views, scheduler_log, and the recruitment views (others may add more)
    assert {"batch_progress", "task_overview", "worker_overview", "execution_overview",
            "execution_stats", "task_log", "scheduler_log", "recruiter_overview",
            "instance_overview", "cloud_operation_overview"} <= views  # fmt: skip


def test_models_match_the_migrated_database(db):
    # the partitions of the partitioned tables are made by 65_retention.sql, not models
    with psycopg.connect(db) as conn:
        partitions = {
            name
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'scitq'::regnamespace "
                "AND relispartition"
            )
        }
    engine = migrate.engine_for(db)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, parent: (
                    (type_ != "schema" or name == "scitq") and name not in partitions
                ),
                "compare_type": True,
                "version_table_schema": "scitq",
            },
        )
        differences = compare_metadata(context, models.metadata)
    assert differences == []


def test_upgrade_downgrade_upgrade(empty_db):
    migrate.upgrade(empty_db)
    assert migrate.current_revision(empty_db) == migrate.head_revision()
    from alembic import command

    command.downgrade(migrate.alembic_config(migrate.engine_for(empty_db)), "base")
    assert migrate.current_revision(empty_db) is None
    with psycopg.connect(empty_db) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'scitq'::regnamespace "
            "AND relname <> 'alembic_version' AND relkind IN ('r', 'v')"
        ).fetchone()
        assert left == (0,)
    migrate.upgrade(empty_db)
    assert migrate.current_revision(empty_db) == migrate.head_revision()


def test_frozen_sql_matches_the_current_sources():
    """The SQL files as they stand at the head revision (each file's latest frozen version)
    are the current sources: a changed function needs a new migration (migrations/README.md)."""
    from scitq import sql

    frozen = {
        name: path.read_text()
        for name, path in migrate.frozen_files(migrate.head_revision()).items()
    }
    assert frozen == dict(sql.function_sources())


def test_revisions_hold_only_the_files_they_change():
    """A revision after the first holds a file only when it differs from the file's
    previous version: the rest is found in earlier revisions."""
    revisions = migrate.frozen_revisions()
    unchanged = [
        f"{revision}/{name}"
        for before, revision in itertools.pairwise(revisions)
        for name, path in sorted(
            (path.name, path)
            for path in (migrate.migrations_dir() / "sql" / revision).glob("*.sql")
        )
        if (previous := migrate.frozen_files(before).get(name)) is not None
        and previous.read_bytes() == path.read_bytes()
    ]
    assert unchanged == []


def test_downgrade_one_revision_then_upgrade_gives_the_same_catalog(empty_db, db):
    """head -> its previous revision -> head: the catalog is the head's again, and the
    previous revision's catalog is the one a plain upgrade to it builds."""
    from alembic import command

    revisions = migrate.frozen_revisions()
    assert revisions[-1] == migrate.head_revision()
    previous = revisions[-2]
    config = migrate.alembic_config(migrate.engine_for(empty_db))
    command.upgrade(config, previous)
    at_previous = catalog(empty_db)
    command.upgrade(config, "head")
    command.downgrade(config, previous)
    assert migrate.current_revision(empty_db) == previous
    downgraded = catalog(empty_db)
    for part in CATALOG_QUERIES:
        if part == "enums" and downgraded[part] == catalog(db)[part]:
            continue  # PostgreSQL cannot drop an enum value: a downgrade leaves the head's
        assert downgraded[part] == at_previous[part], f"{part} differ after the downgrade"
    command.upgrade(config, "head")
    again, head = catalog(empty_db), catalog(db)
    for part in CATALOG_QUERIES:
        assert again[part] == head[part], f"{part} differ after downgrade and upgrade"


def test_upgrade_to_0006_sums_the_run_time_of_earlier_successes(empty_db):
    from alembic import command

    config = migrate.alembic_config(migrate.engine_for(empty_db))
    command.upgrade(config, "0005")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("""SELECT scitq.task_submit_v1('b', '[{"command": "x"}, {"command": "y"}]')""")
        worker = conn.execute("SELECT id FROM scitq.worker_register_v1('w', p_concurrency => 2)")
        worker_id = worker.fetchone()[0]
        claimed = conn.execute("SELECT execution_id FROM scitq.task_claim_v1(%s, 2)", (worker_id,))
        results = [{"execution_id": e, "return_code": 0, "wall_seconds": wall}
                   for (e,), wall in zip(claimed.fetchall(), (0.25, 0.5), strict=True)]  # fmt: skip
        conn.execute("SELECT scitq.execution_finish_v1(%s, %s)", (worker_id, json.dumps(results)))
    command.upgrade(config, "head")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT succeeded, run_total_seconds, run_max_seconds FROM scitq.batch_duration"
        ).fetchall()
    assert rows == [(2, 0.75, 0.5)]
