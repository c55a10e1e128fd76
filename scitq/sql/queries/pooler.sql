-- Named queries of scitq.db.pooler: is a connection pooler between us and the server?

-- name: session_backend_pid
-- The process id of the server backend running this transaction. libpq reports the pid of
-- the cancel key the server sent at login; a connection pooler (PgBouncer) sends keys of
-- its own, so the two differ behind one.
SELECT pg_backend_pid() AS pid;
