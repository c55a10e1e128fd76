-- Read-only named queries of the web dashboard (scitq/db/dashboard.py): users, the
-- throughput chart, paging back through output, recruiters and cloud operations.
-- The dashboard's writes go through the stored functions, like the CLI's.

-- name: web_user_get
-- One user with the password hash, for the login check and the role of each request.
SELECT u.id, u.name, u.password_hash, u.role, u.created_at, u.last_login_at
FROM scitq.web_user u
WHERE u.name = %(name)s;

-- name: web_user_list
SELECT u.id, u.name, u.role, u.created_at, u.last_login_at
FROM scitq.web_user u
ORDER BY u.name;

-- name: web_user_set
SELECT * FROM scitq.web_user_set_v1(%(name)s, %(password_hash)s, %(role)s);

-- name: web_user_record_login
SELECT scitq.web_user_record_login_v1(%(name)s);

-- name: web_user_delete
SELECT scitq.web_user_delete_v1(%(name)s) AS deleted;

-- name: dashboard_throughput
-- Attempts ended per time bucket over the last %(window_seconds)s (a range of
-- execution_finished_at_idx); buckets without any are absent. Lost, failed and timed
-- out attempts count as failed; canceled ones are left out.
SELECT date_bin(make_interval(secs => %(bucket_seconds)s::double precision), e.finished_at,
                TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       count(*) FILTER (WHERE e.status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE e.status IN ('failed', 'lost', 'timeout')) AS failed
FROM scitq.execution e
WHERE e.finished_at IS NOT NULL
  AND e.finished_at >= now() - make_interval(secs => %(window_seconds)s::double precision)
GROUP BY 1
ORDER BY 1;

-- name: dashboard_output_before
-- The last %(limit)s output chunks before the sequence number %(before_seq)s, oldest
-- first: a backward range of the primary key (execution_id, seq).
SELECT page.execution_id, page.seq, page.stream, page.at, page.text
FROM (
    SELECT o.execution_id, o.seq, o.stream, o.at, o.text
    FROM scitq.execution_output o
    WHERE o.execution_id = %(execution_id)s
      AND o.seq < %(before_seq)s
    ORDER BY o.seq DESC
    LIMIT %(limit)s
) page
ORDER BY page.seq;

-- name: dashboard_recruiters
SELECT r.id, b.name AS batch, r.rank, r.provider, r.flavor, r.region, r.concurrency,
       r.prefetch, r.min_workers, r.max_workers, r.tasks_per_worker, r.created_at,
       (SELECT count(*) FROM scitq.worker w WHERE w.recruiter_id = r.id) AS workers
FROM scitq.recruiter r
JOIN scitq.batch b ON b.id = r.batch_id
ORDER BY b.name, r.rank, r.id;

-- name: dashboard_instances
-- Instances that exist, and those deleted in the last day.
SELECT i.id, i.provider, i.provider_ref, i.name, i.worker_id, w.name AS worker_name,
       i.flavor, i.region, i.status, i.created_at, i.deleted_at
FROM scitq.instance i
LEFT JOIN scitq.worker w ON w.id = i.worker_id
WHERE i.deleted_at IS NULL
   OR i.deleted_at > now() - interval '1 day'
ORDER BY i.id DESC
LIMIT %(limit)s;

-- name: dashboard_cloud_operations
-- The latest operations with the end of their log.
SELECT o.id, o.kind, o.instance_id, i.name AS instance_name, o.worker_id, o.provider,
       o.status, o.progress, o.attempts, o.error_class, o.created_at, o.updated_at,
       right(o.log, 2000) AS log_tail
FROM scitq.cloud_operation o
LEFT JOIN scitq.instance i ON i.id = o.instance_id
ORDER BY o.id DESC
LIMIT %(limit)s;

-- name: dashboard_batches
-- The counts of scitq.batch_progress, read for the dashboard at a cost that stays low
-- on millions of tasks: per (batch, status) from task_batch_id_status_idx (an
-- index-only scan once autovacuum has passed), and durations from the newest
-- %(sample)s attempts that succeeded in the last %(window_seconds)s (a range of
-- execution_finished_at_idx) instead of every attempt ever. %(batch)s: one batch, or
-- all when NULL.
WITH counts AS (
    SELECT t.batch_id, t.status, count(*) AS n
    FROM scitq.task t
    WHERE %(batch)s::text IS NULL
       OR t.batch_id = (SELECT x.id FROM scitq.batch x WHERE x.name = %(batch)s::text)
    GROUP BY t.batch_id, t.status
),
recent AS (
    SELECT t.batch_id,
           avg(extract(epoch FROM e.finished_at - e.assigned_at))::double precision
               AS mean_seconds,
           max(extract(epoch FROM e.finished_at - e.assigned_at))::double precision
               AS max_seconds
    FROM (
        -- the newest successes only: joining every attempt of a busy hour to its task
        -- would cost a scan of the task table
        SELECT x.task_id, x.assigned_at, x.finished_at
        FROM scitq.execution x
        WHERE x.finished_at IS NOT NULL
          AND x.finished_at >= now() - make_interval(secs => %(window_seconds)s::double precision)
          AND x.status = 'succeeded'
        ORDER BY x.finished_at DESC
        LIMIT %(sample)s
    ) e
    JOIN scitq.task t ON t.id = e.task_id
    GROUP BY t.batch_id
)
SELECT b.id AS batch_id,
       b.name AS batch,
       b.is_paused,
       coalesce(sum(c.n), 0)::bigint AS total,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'waiting'), 0)::bigint AS waiting,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'pending'), 0)::bigint AS pending,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'assigned'), 0)::bigint AS assigned,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'running'), 0)::bigint AS running,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'succeeded'), 0)::bigint AS succeeded,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'failed'), 0)::bigint AS failed,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'paused'), 0)::bigint AS paused,
       coalesce(sum(c.n) FILTER (WHERE c.status = 'canceled'), 0)::bigint AS canceled,
       coalesce(sum(c.n) FILTER (
           WHERE c.status IN ('waiting', 'pending', 'assigned', 'running', 'paused')
       ), 0)::bigint AS remaining,
       r.mean_seconds,
       r.max_seconds,
       b.created_at
FROM scitq.batch b
LEFT JOIN counts c ON c.batch_id = b.id
LEFT JOIN recent r ON r.batch_id = b.id
WHERE %(batch)s::text IS NULL OR b.name = %(batch)s::text
GROUP BY b.id, r.mean_seconds, r.max_seconds
ORDER BY b.id;

-- name: dashboard_task_window
-- The ids a bounded name search looked at: the next %(budget)s task ids after %(after)s
-- (an index-only range of task_pkey). last_id is NULL when there is none.
SELECT max(w.id) AS last_id, count(*) AS ids
FROM (
    SELECT t.id
    FROM scitq.task t
    WHERE t.id > coalesce(%(after)s::bigint, 0)
    ORDER BY t.id
    LIMIT %(budget)s::integer
) w;

-- name: dashboard_task_ids_by_name
-- The ids of the tasks whose name matches %(name)s (ILIKE) among the ids in
-- (%(after)s, %(last_id)s], with the other filters of task_list: a range of task_pkey.
-- The bounds are values, not a subquery, so that the planner sees how narrow the range
-- is (with an unknown bound it scans the whole table).
SELECT t.id
FROM scitq.task t
WHERE t.id > coalesce(%(after)s::bigint, 0)
  AND t.id <= %(last_id)s::bigint
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
