-- Named queries of the scheduler: its lock, its decision log and its duties.

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

-- name: execution_expiry_outcome
-- What became of executions just marked lost and of their tasks (for the decision log).
SELECT e.id AS execution_id, e.task_id, e.worker_name, e.attempt, e.lease_expires_at,
       t.status AS task_status, t.available_at
FROM scitq.execution e
JOIN scitq.task t ON t.id = e.task_id
WHERE e.id = ANY (%(execution_ids)s::bigint[])
ORDER BY e.id;

-- name: execution_overdue
-- Live executions past their timeout plus a grace: downloading longer than the
-- task's download_timeout_seconds, or running longer than its run_timeout_seconds. An
-- execution only assigned is queued on its worker (prefetch), not downloading: it is not
-- timed. kill_age_seconds: how long ago a kill signal was sent to it (NULL: never).
SELECT e.id AS execution_id, e.task_id, e.status AS phase, e.worker_name,
       CASE WHEN e.status = 'running' THEN t.run_timeout_seconds
            ELSE t.download_timeout_seconds END AS timeout_seconds,
       extract(epoch FROM n.at - CASE WHEN e.status = 'running' THEN e.run_started_at
                                      ELSE e.download_started_at END)::double precision
           AS elapsed_seconds,
       extract(epoch FROM n.at - k.sent_at)::double precision AS kill_age_seconds
FROM (SELECT coalesce(%(now)s::timestamptz, now()) AS at) n
CROSS JOIN scitq.execution e
JOIN scitq.task t ON t.id = e.task_id
LEFT JOIN LATERAL (
    SELECT min(s.created_at) AS sent_at
    FROM scitq.signal s
    WHERE s.execution_id = e.id
      AND s.kind = 'kill'
) k ON true
-- the live statuses, so that the partial indexes on live executions apply
WHERE e.status IN ('assigned', 'downloading', 'running', 'uploading')
  AND (
      -- compared in seconds: a huge timeout must not overflow interval arithmetic
      (e.status = 'running'
       AND extract(epoch FROM n.at - e.run_started_at)
           > t.run_timeout_seconds + %(grace_seconds)s::double precision)
      OR (e.status = 'downloading'
          AND extract(epoch FROM n.at - e.download_started_at)
              > t.download_timeout_seconds + %(grace_seconds)s::double precision)
  )
ORDER BY e.id
LIMIT %(limit)s;

-- name: execution_timeout
SELECT execution_id, task_id, task_status
FROM scitq.execution_timeout_v1(%(execution_ids)s::bigint[], %(reason)s, %(now)s);

-- name: worker_track_liveness
-- Record every worker whose liveness changed since the last call.
SELECT worker_id, worker_name, previous, liveness
FROM scitq.worker_track_liveness_v1(%(scheduler)s, %(now)s);

-- name: execution_output_prune
SELECT scitq.execution_output_prune_v1(
    make_interval(secs => %(older_than_seconds)s::double precision), %(limit)s, %(now)s
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
