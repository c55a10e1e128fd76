-- Named queries about tasks and batches (admin side).

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

-- name: batch_pause
SELECT scitq.batch_pause_v1(%(batch)s, %(now)s);

-- name: batch_resume
SELECT scitq.batch_resume_v1(%(batch)s, %(now)s);

-- name: batch_signal
SELECT scitq.batch_signal_v1(%(batch)s, %(kind)s::scitq.signal_kind, %(now)s) AS count;

-- name: batch_cancel
SELECT scitq.batch_cancel_v1(%(batch)s, %(reason)s, %(now)s) AS count;

-- name: batch_retry
SELECT scitq.batch_retry_v1(%(batch)s, %(now)s) AS count;

-- name: batch_delete
SELECT scitq.batch_delete_v1(%(batch)s, %(now)s) AS count;

-- name: execution_expire_leases
-- Mark executions whose lease expired as lost and retry or fail their tasks.
SELECT execution_id, task_id FROM scitq.execution_expire_leases_v1(%(now)s);
