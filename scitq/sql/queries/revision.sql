-- Named queries about the schema revision, read without Alembic (scitq.db.revision).

-- name: revision_table_exists
-- Whether the Alembic version table exists (not yet in an empty database).
SELECT to_regclass('scitq.alembic_version') IS NOT NULL AS found;

-- name: revision_recorded
-- The revision the database is at.
SELECT v.version_num
FROM scitq.alembic_version v;
