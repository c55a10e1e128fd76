-- Named queries about batches: their state changes and reads.

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

-- name: batch_set_requeues
SELECT scitq.batch_set_requeues_v1(%(batch)s, %(requeues)s) AS count;

-- name: batch_find
SELECT b.id, b.name, b.is_paused, b.paused_at, b.created_at
FROM scitq.batch b
WHERE b.name = %(batch)s;

-- name: batch_execution_stats
SELECT s.*
FROM scitq.execution_stats s
WHERE s.batch = %(batch)s;

-- name: batch_workers
-- Workers that serve a batch: those listing it, and those serving every batch ('{}').
SELECT w.*
FROM scitq.worker_overview w
WHERE cardinality(w.batches) = 0 OR %(batch)s::text = ANY (w.batches)
ORDER BY w.worker_id;

-- name: batch_count_compact
SELECT scitq.batch_count_compact_v1() AS count;
