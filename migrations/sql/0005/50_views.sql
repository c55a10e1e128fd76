-- Reporting views: the documented read API (docs/sql-api.md). Readers (scitq_reader) get
-- SELECT on these views and on nothing else.

-- The tasks of one batch per status: counts (status -> n, statuses without tasks absent),
-- total and remaining (live statuses, scitq.task_is_live). Read from batch_task_count,
-- which the task triggers keep in the transaction of every change (10_task.sql): a few
-- rows per batch (one per status and backend that changed it since the last
-- batch_count_compact_v1), whatever the batch's size and plan (issues 16, 20). A function
-- so that no plan of the view that calls it can join it to anything else; SECURITY
-- DEFINER so that scitq_reader, who reads the view, needs no privilege on the table.
CREATE OR REPLACE FUNCTION scitq.batch_count_tasks_v1(p_batch_id bigint)
RETURNS TABLE (counts jsonb, total bigint, remaining bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = scitq, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb),
           coalesce(sum(s.n), 0)::bigint,
           coalesce(sum(s.n) FILTER (WHERE scitq.task_is_live(s.status)), 0)::bigint
    FROM (
        SELECT c.status, sum(c.n)::bigint AS n
        FROM scitq.batch_task_count c
        WHERE c.batch_id = p_batch_id
        GROUP BY c.status
        HAVING sum(c.n) <> 0
    ) s;
END;
$$;

-- Progress of every batch. Its cost does not depend on the plan: per batch, one call of
-- batch_count_tasks_v1 and the few rows of batch_duration (one per worker that finished
-- a task of the batch), never a join of executions to tasks. counts holds every status
-- (a status added later shows up there without a change here); the columns per status
-- are kept for the readers written against them.
CREATE OR REPLACE VIEW scitq.batch_progress AS
SELECT b.id AS batch_id,
       b.name AS batch,
       b.is_paused,
       c.total,
       coalesce((c.counts ->> 'waiting')::bigint, 0) AS waiting,
       coalesce((c.counts ->> 'pending')::bigint, 0) AS pending,
       coalesce((c.counts ->> 'assigned')::bigint, 0) AS assigned,
       coalesce((c.counts ->> 'running')::bigint, 0) AS running,
       coalesce((c.counts ->> 'succeeded')::bigint, 0) AS succeeded,
       coalesce((c.counts ->> 'failed')::bigint, 0) AS failed,
       coalesce((c.counts ->> 'paused')::bigint, 0) AS paused,
       coalesce((c.counts ->> 'canceled')::bigint, 0) AS canceled,
       c.remaining,
       d.mean_seconds,
       d.max_seconds,
       b.created_at,
       c.counts
FROM scitq.batch b
CROSS JOIN LATERAL scitq.batch_count_tasks_v1(b.id) c
LEFT JOIN LATERAL (
    -- duration of succeeded attempts, from claim to end, kept by execution_finish_v1
    SELECT (sum(x.total_seconds) / nullif(sum(x.succeeded), 0))::double precision AS mean_seconds,
           max(x.max_seconds) AS max_seconds
    FROM scitq.batch_duration x
    WHERE x.batch_id = b.id
) d ON true;

CREATE OR REPLACE VIEW scitq.task_overview AS
SELECT t.id AS task_id,
       b.name AS batch,
       t.name,
       t.status,
       t.command,
       t.shell,
       t.container,
       t.priority,
       t.retries,
       t.attempt_count,
       t.available_at,
       t.cancel_reason,
       t.tags,
       t.created_at,
       t.status_changed_at,
       e.id AS last_execution_id,
       e.status AS last_execution_status,
       e.worker_name,
       e.return_code,
       e.failure_class,
       e.failure_reason,
       e.wall_seconds,
       e.peak_rss_bytes,
       -- attempts that counted against the retries, and free requeues (lost or handed
       -- back executions) used of the task's allowance
       t.attempt_count - t.retry_floor AS attempts_used,
       t.requeue_count,
       t.requeues,
       -- scitq v1's use_cache; a last attempt that reused an earlier one's output (a
       -- cache hit) names it
       t.use_cache,
       e.cached_from_execution_id
FROM scitq.task t
JOIN scitq.batch b ON b.id = t.batch_id
LEFT JOIN LATERAL (
    SELECT x.*
    FROM scitq.execution x
    WHERE x.task_id = t.id
    ORDER BY x.attempt DESC
    LIMIT 1
) e ON true;

CREATE OR REPLACE VIEW scitq.worker_overview AS
SELECT w.id AS worker_id,
       w.name,
       w.hostname,
       w.batches,
       w.concurrency,
       w.prefetch,
       w.is_paused,
       w.is_draining,
       w.is_permanent,
       -- online while heartbeats arrive within a lease; offline otherwise
       CASE
           WHEN w.status = 'stopped' THEN 'stopped'
           WHEN w.last_heartbeat_at > now() - make_interval(secs => w.lease_seconds) THEN 'online'
           ELSE 'offline'
       END AS liveness,
       w.last_heartbeat_at,
       count(e.id) FILTER (WHERE e.status IN ('running', 'uploading')) AS running,
       count(e.id) FILTER (WHERE e.status IN ('assigned', 'downloading')) AS assigned,
       w.created_at
FROM scitq.worker w
LEFT JOIN scitq.execution e
       ON e.worker_id = w.id AND e.status IN ('assigned', 'downloading', 'running', 'uploading')
GROUP BY w.id;

CREATE OR REPLACE VIEW scitq.execution_overview AS
SELECT e.id AS execution_id,
       e.task_id,
       b.name AS batch,
       t.name AS task_name,
       e.attempt,
       e.status,
       e.worker_name,
       e.assigned_at,
       e.download_started_at,
       e.run_started_at,
       e.upload_started_at,
       e.finished_at,
       e.lease_expires_at,
       e.return_code,
       e.failure_class,
       e.failure_reason,
       e.wall_seconds,
       e.cpu_user_seconds,
       e.cpu_system_seconds,
       e.peak_rss_bytes,
       e.bytes_in,
       e.bytes_out,
       -- a cache hit: the earlier success whose output it reused, without running
       e.cached_from_execution_id
FROM scitq.execution e
JOIN scitq.task t ON t.id = e.task_id
JOIN scitq.batch b ON b.id = t.batch_id;

CREATE OR REPLACE VIEW scitq.execution_stats AS
SELECT b.name AS batch,
       count(e.id) AS executions,
       count(e.id) FILTER (WHERE e.status = 'succeeded') AS succeeded,
       count(e.id) FILTER (WHERE e.status IN ('failed', 'timeout', 'lost')) AS failed,
       avg(e.wall_seconds) AS mean_wall_seconds,
       max(e.wall_seconds) AS max_wall_seconds,
       sum(e.cpu_user_seconds) AS cpu_user_seconds,
       sum(e.cpu_system_seconds) AS cpu_system_seconds,
       avg(e.peak_rss_bytes)::bigint AS mean_peak_rss_bytes,
       max(e.peak_rss_bytes) AS max_peak_rss_bytes,
       sum(e.bytes_in) AS bytes_in,
       sum(e.bytes_out) AS bytes_out
FROM scitq.execution e
JOIN scitq.task t ON t.id = e.task_id
JOIN scitq.batch b ON b.id = t.batch_id
GROUP BY b.name;

CREATE OR REPLACE VIEW scitq.task_log AS
SELECT o.execution_id,
       e.task_id,
       e.attempt,
       o.seq,
       o.stream,
       o.at,
       o.text
FROM scitq.execution_output o
JOIN scitq.execution e ON e.id = o.execution_id;
