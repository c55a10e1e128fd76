-- Named queries of the scheduler: its lock and its decision log.

-- name: scheduler_lock_try
-- Take the scheduler's session-level advisory lock if it is free (never waits).
SELECT pg_try_advisory_lock(%(key)s::bigint) AS locked;

-- name: scheduler_lock_release
SELECT pg_advisory_unlock(%(key)s::bigint) AS released;

-- name: scheduler_lock_holder
-- The session holding the scheduler lock in this database, if any. A bigint key shows in
-- pg_locks as classid (high 32 bits), objid (low 32 bits) and objsubid 1.
SELECT l.pid, a.application_name
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory'
  AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
  AND l.classid = (%(key)s::bigint >> 32)::oid
  AND l.objid = (%(key)s::bigint & 4294967295)::oid
  AND l.objsubid = 1
  AND l.granted;

-- name: scheduler_lock_held
-- Whether the session of backend %(pid)s holds the scheduler lock: checked at the start of
-- every duty's transaction, so a scheduler that lost its lock stops acting.
SELECT EXISTS (
    SELECT 1
    FROM pg_locks l
    WHERE l.locktype = 'advisory'
      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
      AND l.classid = (%(key)s::bigint >> 32)::oid
      AND l.objid = (%(key)s::bigint & 4294967295)::oid
      AND l.objsubid = 1
      AND l.granted
      AND l.pid = %(pid)s
) AS held;

-- name: scheduler_record
-- Record decisions of one duty (a JSON array of objects, see scheduler_record_v1).
SELECT scitq.scheduler_record_v1(
    %(duty)s, %(decisions)s::jsonb, %(scheduler)s, %(now)s
) AS count;

-- name: scheduler_decision_prune
SELECT scitq.scheduler_decision_prune_v1(
    make_interval(secs => %(older_than_seconds)s::double precision), %(limit)s, %(now)s
) AS count;

-- name: scheduler_log
-- The latest decisions, newest first, optionally of one duty.
SELECT id, at, duty, subject_kind, subject_id, decision, reason, details, scheduler
FROM scitq.scheduler_log
WHERE %(duty)s::text IS NULL OR duty = %(duty)s::text
ORDER BY id DESC
LIMIT %(limit)s;
