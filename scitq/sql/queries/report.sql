-- Named read queries of reporting: batch counts (the view scitq.batch_progress, and
-- the dashboard's cheaper read of it), throughput, and the size of the schema.

-- name: batch_progress
SELECT * FROM scitq.batch_progress
WHERE %(batch)s::text IS NULL OR batch = %(batch)s::text
ORDER BY batch_id;

-- name: batch_counts
-- The counts of scitq.batch_progress, read for the dashboard at a cost that stays low
-- on millions of tasks: per (batch, status) from batch_task_count (a few rows per
-- batch, kept by the task triggers), and durations from the newest
-- %(sample)s attempts that succeeded in the last %(window_seconds)s (a range of
-- execution_finished_at_idx) instead of every attempt ever. %(batch)s: one batch, or
-- all when NULL.
WITH counts AS (
    SELECT c.batch_id, c.status, sum(c.n) AS n
    FROM scitq.batch_task_count c
    WHERE %(batch)s::text IS NULL
       OR c.batch_id = (SELECT x.id FROM scitq.batch x WHERE x.name = %(batch)s::text)
    GROUP BY c.batch_id, c.status
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

-- name: execution_throughput
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

-- name: schema_counts
SELECT (SELECT count(*) FROM scitq.batch) AS batches,
       (SELECT count(*) FROM scitq.task) AS tasks,
       (SELECT count(*) FROM scitq.execution) AS executions,
       (SELECT count(*) FROM scitq.worker) AS workers;
