-- Named queries about tasks: submission and the state changes of users, the
-- agent's claim, and the reads of listings (keyset pages), detail and `scitq task
-- explain`.
--
-- Optional filters are written `%(x)s::type IS NULL OR ...`; their wrappers run them
-- unprepared, so PostgreSQL plans each call with the actual values: a NULL filter
-- folds away and the others can use their indexes.

-- name: task_submit
-- Submit many tasks (a JSON array) to a batch; returns id, name, status per task.
SELECT id, name, status FROM scitq.task_submit_v1(%(batch)s, %(tasks)s::jsonb, %(now)s);

-- name: task_pause
SELECT id, status FROM scitq.task_pause_v1(%(task_ids)s::bigint[], %(now)s);

-- name: task_resume
SELECT id, status FROM scitq.task_resume_v1(%(task_ids)s::bigint[], %(now)s);

-- name: task_cancel
SELECT id, status FROM scitq.task_cancel_v1(%(task_ids)s::bigint[], %(reason)s, %(now)s);

-- name: task_retry
SELECT id, status FROM scitq.task_retry_v1(%(task_ids)s::bigint[], %(now)s);

-- name: task_delete
SELECT scitq.task_delete_v1(%(task_ids)s::bigint[], %(now)s) AS count;

-- name: task_signal
SELECT scitq.task_signal_v1(%(task_ids)s::bigint[], %(kind)s::scitq.signal_kind, %(now)s) AS count;

-- name: task_claim
-- task_claim_v1's claim, with use_cache and the cache candidates of each task
SELECT * FROM scitq.task_claim_v2(%(worker_id)s, %(limit)s, %(now)s);

-- name: task_update
-- Edit tasks (a JSON object of fields); returns id, status, rerun per task.
SELECT id, status, rerun
FROM scitq.task_update_v1(%(task_ids)s::bigint[], %(changes)s::jsonb, %(rerun)s::boolean,
                          %(by)s::text, %(now)s);

-- name: task_rerun
SELECT id, status FROM scitq.task_rerun_v1(%(task_ids)s::bigint[], %(now)s);

-- name: task_get
SELECT * FROM scitq.task_overview WHERE task_id = %(task_id)s;

-- name: task_list
-- One page of tasks in id order after the id %(after)s (keyset pagination).
-- %(task_ids)s selects tasks by id; %(worker)s keeps the tasks with an attempt on that
-- worker (by name: history survives the deletion of the worker row).
--
-- With filters, the primary key order is fast only where matching rows are dense. So a
-- filtered page is read in two phases (scitq.client.Client.page): first with %(upto)s
-- (the id %(scan_budget)s ids after %(after)s, from task_window_end), the page is looked
-- for in that bounded range of task_pkey only; if that does not fill it, again with
-- %(by_id)s false,
-- which hides the id order from the planner so that it uses the filter's own index
-- (task_batch_id_status_idx, task_status_idx) and sorts what matches.
SELECT t.id,
       b.name AS batch,
       t.name,
       t.status,
       t.command,
       t.shell,
       t.container,
       t.container_options,
       t.inputs,
       t.resources,
       t.output,
       t.retries,
       t.retry_delay_seconds,
       t.download_timeout_seconds,
       t.run_timeout_seconds,
       t.priority,
       t.env,
       t.tags,
       ARRAY(
           SELECT d.depends_on_id
           FROM scitq.task_dependency d
           WHERE d.task_id = t.id
           ORDER BY d.depends_on_id
       ) AS depends_on,
       t.attempt_count,
       t.attempt_count - t.retry_floor AS attempts_used,
       t.requeues,
       t.requeue_count,
       t.available_at,
       t.cancel_reason,
       t.canceled_by_task_id,
       t.created_at,
       t.status_changed_at,
       t.use_cache,
       e.cached_from_execution_id,
       e.id AS last_execution_id,
       e.status AS last_execution_status,
       e.worker_name,
       e.return_code,
       e.failure_class,
       e.failure_reason,
       e.wall_seconds,
       e.peak_rss_bytes
FROM scitq.task t
JOIN scitq.batch b ON b.id = t.batch_id
LEFT JOIN LATERAL (
    -- the last attempt (execution_task_id_attempt_idx)
    SELECT x.*
    FROM scitq.execution x
    WHERE x.task_id = t.id
    ORDER BY x.attempt DESC
    LIMIT 1
) e ON true
WHERE (%(after)s::bigint IS NULL OR t.id > %(after)s::bigint)
  -- the window's last id, found beforehand (task_window_end): as a value, not a
  -- subquery, so the planner sees how narrow the range of task_pkey is
  AND (%(upto)s::bigint IS NULL OR t.id <= %(upto)s::bigint)
  AND (%(task_ids)s::bigint[] IS NULL OR t.id = ANY (%(task_ids)s::bigint[]))
  AND (%(batch_id)s::bigint IS NULL OR t.batch_id = %(batch_id)s::bigint)
  AND (%(statuses)s::scitq.task_status[] IS NULL
       OR t.status = ANY (%(statuses)s::scitq.task_status[]))
  AND (%(name)s::text IS NULL OR t.name ILIKE %(name)s::text)
  AND (%(since)s::timestamptz IS NULL OR t.created_at >= %(since)s::timestamptz)
    -- any attempt; a hashed pass on execution when the page is not found early
  AND (%(worker)s::text IS NULL OR EXISTS (
           SELECT 1
           FROM scitq.execution w
           WHERE w.task_id = t.id
             AND w.worker_name = %(worker)s::text))
-- `t.id + 0` sorts the same but cannot be read from task_pkey
ORDER BY CASE WHEN %(by_id)s::boolean THEN t.id ELSE t.id + 0 END
LIMIT %(limit)s;

-- name: task_window
-- The next %(scan_budget)s task ids after %(after)s (an index-only range of task_pkey):
-- upto, the last of them (NULL when there is none), and ids, how many there are. A page
-- filtered by indexed columns looks among them first (task_list's %(upto)s); a name
-- search goes through them window by window (task_ids_by_name).
SELECT max(w.id) AS upto, count(*) AS ids
FROM (
    SELECT x.id
    FROM scitq.task x
    WHERE x.id > coalesce(%(after)s::bigint, 0)
    ORDER BY x.id
    LIMIT %(scan_budget)s::integer
) w;

-- name: task_ids_by_name
-- The ids of the tasks whose name matches %(name)s (ILIKE) among the ids in
-- (%(after)s, %(upto)s], with the other filters of task_list: a range of task_pkey.
-- The bounds are values, not a subquery, so that the planner sees how narrow the range
-- is (with an unknown bound it scans the whole table).
SELECT t.id
FROM scitq.task t
WHERE t.id > coalesce(%(after)s::bigint, 0)
  AND t.id <= %(upto)s::bigint
  AND t.name ILIKE %(name)s::text
  AND (%(statuses)s::scitq.task_status[] IS NULL
       OR t.status = ANY (%(statuses)s::scitq.task_status[]))
  AND (%(worker)s::text IS NULL OR EXISTS (
           SELECT 1
           FROM scitq.execution w
           WHERE w.task_id = t.id
             AND w.worker_name = %(worker)s::text))
ORDER BY t.id
LIMIT %(limit)s;

-- name: task_statuses
-- The status of each existing task among %(task_ids)s (unknown ids are absent).
SELECT t.id, t.status, t.cancel_reason
FROM scitq.task t
WHERE t.id = ANY (%(task_ids)s::bigint[])
ORDER BY t.id;

-- name: task_dependencies
-- The tasks a task depends on, with their status.
SELECT u.id, u.name, b.name AS batch, u.status, u.cancel_reason
FROM scitq.task_dependency d
JOIN scitq.task u ON u.id = d.depends_on_id
JOIN scitq.batch b ON b.id = u.batch_id
WHERE d.task_id = %(task_id)s
ORDER BY u.id;

-- name: task_executions
-- Every attempt of a task, oldest first.
SELECT e.id, e.task_id, e.attempt, e.status, e.worker_name, e.assigned_at,
       e.download_started_at, e.run_started_at, e.upload_started_at, e.finished_at,
       e.lease_expires_at, e.return_code, e.failure_class, e.failure_reason, e.wall_seconds,
       e.cpu_user_seconds, e.cpu_system_seconds, e.peak_rss_bytes, e.bytes_in, e.bytes_out,
       e.cached_from_execution_id
FROM scitq.execution e
WHERE e.task_id = %(task_id)s
ORDER BY e.attempt;

-- name: task_edits
-- The edits of a task (task_update_v1), oldest first: when, by whom, and each field's
-- old and new value.
SELECT ev.at, ev.change ->> 'by' AS by, ev.change -> 'fields' AS fields
FROM scitq.task_event ev
WHERE ev.task_id = %(task_id)s
  AND ev.change IS NOT NULL
ORDER BY ev.id;

-- name: task_explain
-- What decides whether a task runs: its status and batch, its last attempt, the
-- dependencies it still waits for, the workers serving its batch with their free slots
-- and their disk (free, and the floor below which they claim nothing), and how many
-- runnable tasks of the batch come before it in claim order (at most 10000).
SELECT t.id,
       t.status,
       t.priority,
       t.available_at,
       t.status_changed_at,
       t.cancel_reason,
       t.canceled_by_task_id,
       t.attempt_count,
       t.retries,
       t.attempt_count - t.retry_floor AS attempts_used,
       t.requeues,
       t.requeue_count,
       b.name AS batch,
       b.is_paused AS batch_is_paused,
       b.paused_at AS batch_paused_at,
       now() AS now,
       e.id AS execution_id,
       e.status AS execution_status,
       e.attempt,
       e.worker_name,
       e.assigned_at,
       e.run_started_at,
       e.finished_at,
       e.return_code,
       e.failure_class,
       e.failure_reason,
       e.cached_from_execution_id,
       t.use_cache,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'id', u.id, 'name', u.name, 'batch', ub.name, 'status', u.status,
                      'cancel_reason', u.cancel_reason)
                  ORDER BY u.id)
           FROM scitq.task_dependency d
           JOIN scitq.task u ON u.id = d.depends_on_id
           JOIN scitq.batch ub ON ub.id = u.batch_id
           WHERE d.task_id = t.id
             AND u.status <> 'succeeded'
       ), '[]'::jsonb) AS unmet_dependencies,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'id', w.worker_id, 'name', w.name, 'liveness', w.liveness,
                      'last_heartbeat_at', w.last_heartbeat_at, 'is_paused', w.is_paused,
                      'is_draining', w.is_draining, 'slots', w.concurrency + w.prefetch,
                      'live', w.running + w.assigned, 'disk_free_bytes', m.disk_free_bytes,
                      'disk_floor_bytes', m.disk_floor_bytes)
                  ORDER BY w.worker_id)
           FROM scitq.worker_overview w
           -- its last metrics: a worker below its disk floor claims nothing
           LEFT JOIN LATERAL (
               SELECT x.disk_free_bytes, x.disk_floor_bytes
               FROM scitq.worker_metric x
               WHERE x.worker_id = w.worker_id
               ORDER BY x.at DESC
               LIMIT 1
           ) m ON true
           WHERE cardinality(w.batches) = 0 OR b.name = ANY (w.batches)
       ), '[]'::jsonb) AS workers,
       CASE WHEN t.status = 'pending' THEN (
           SELECT count(*)
           FROM (
               -- a range of task_claim_idx
               SELECT 1
               FROM scitq.task x
               WHERE x.batch_id = t.batch_id
                 AND x.status = 'pending'
                 AND x.available_at <= now()
                 AND (x.priority > t.priority OR (x.priority = t.priority AND x.id < t.id))
               LIMIT 10000
           ) ahead
       ) END AS ahead
FROM scitq.task t
JOIN scitq.batch b ON b.id = t.batch_id
LEFT JOIN LATERAL (
    SELECT x.*
    FROM scitq.execution x
    WHERE x.task_id = t.id
    ORDER BY x.attempt DESC
    LIMIT 1
) e ON true
WHERE t.id = %(task_id)s;
