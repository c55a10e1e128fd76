-- Reporting views: the documented read API (docs/sql-api.md). Readers (scitq_reader) get
-- SELECT on these views and on nothing else.

CREATE OR REPLACE VIEW scitq.batch_progress AS
SELECT b.id AS batch_id,
       b.name AS batch,
       b.is_paused,
       count(t.id) AS total,
       count(t.id) FILTER (WHERE t.status = 'waiting') AS waiting,
       count(t.id) FILTER (WHERE t.status = 'pending') AS pending,
       count(t.id) FILTER (WHERE t.status = 'assigned') AS assigned,
       count(t.id) FILTER (WHERE t.status = 'running') AS running,
       count(t.id) FILTER (WHERE t.status = 'succeeded') AS succeeded,
       count(t.id) FILTER (WHERE t.status = 'failed') AS failed,
       count(t.id) FILTER (WHERE t.status = 'paused') AS paused,
       count(t.id) FILTER (WHERE t.status = 'canceled') AS canceled,
       count(t.id) FILTER (WHERE t.status IN ('waiting', 'pending', 'assigned', 'running', 'paused')) AS remaining,
       s.mean_seconds,
       s.max_seconds,
       b.created_at
FROM scitq.batch b
LEFT JOIN scitq.task t ON t.batch_id = b.id
LEFT JOIN LATERAL (
    -- duration of succeeded attempts, from claim to end
    SELECT avg(extract(epoch FROM e.finished_at - e.assigned_at))::double precision AS mean_seconds,
           max(extract(epoch FROM e.finished_at - e.assigned_at))::double precision AS max_seconds
    FROM scitq.execution e
    JOIN scitq.task x ON x.id = e.task_id
    WHERE x.batch_id = b.id AND e.status = 'succeeded'
) s ON true
GROUP BY b.id, s.mean_seconds, s.max_seconds;

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
       e.peak_rss_bytes
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
       e.bytes_out
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
