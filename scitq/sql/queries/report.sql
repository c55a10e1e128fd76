-- Named read queries (reporting views and status).

-- name: batch_progress
SELECT * FROM scitq.batch_progress
WHERE %(batch)s::text IS NULL OR batch = %(batch)s::text
ORDER BY batch_id;

-- name: task_get
SELECT * FROM scitq.task_overview WHERE task_id = %(task_id)s;

-- name: schema_counts
SELECT (SELECT count(*) FROM scitq.batch) AS batches,
       (SELECT count(*) FROM scitq.task) AS tasks,
       (SELECT count(*) FROM scitq.execution) AS executions,
       (SELECT count(*) FROM scitq.worker) AS workers;
