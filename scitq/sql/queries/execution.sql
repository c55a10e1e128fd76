-- Named queries about executions: the agent's reports (phases, output, results),
-- the scheduler's duties (leases, timeouts, pruning) and the reads of output.

-- name: pass_idle_limit
-- First in an agent's report pass: the server ends the transaction if its client stops
-- between its statements (a frozen agent), instead of keeping the execution and worker
-- rows locked, which lease expiry (FOR UPDATE SKIP LOCKED) would skip for ever.
SELECT set_config('idle_in_transaction_session_timeout', %(milliseconds)s::text, true);

-- name: execution_set_phase
SELECT scitq.execution_set_phase_v1(
    %(worker_id)s, %(execution_id)s, %(phase)s::scitq.execution_status, %(now)s
);

-- name: execution_set_phases
SELECT scitq.execution_set_phase_v2(
    %(worker_id)s, %(execution_ids)s::bigint[], %(phase)s::scitq.execution_status, %(now)s
) AS count;

-- name: execution_append_output
-- texts go in binary: text format escapes every byte of megabytes of output
SELECT scitq.execution_append_output_v1(
    %(worker_id)s, %(execution_ids)s::bigint[], %(seqs)s::integer[],
    %(streams)s::scitq.output_stream[], %(texts)b::text[], %(now)s
) AS count;

-- name: execution_finish
SELECT * FROM scitq.execution_finish_v1(%(worker_id)s, %(results)s::jsonb, %(now)s);

-- name: execution_record_cache
-- use_cache: the listing digest, the output's files and a cache hit's source, before finish
SELECT scitq.execution_record_cache_v1(
    %(worker_id)s, %(execution_id)s, %(input_fingerprint)s, %(output_manifest)s::jsonb,
    %(cached_from)s::bigint, %(now)s
);

-- name: execution_expire_leases
-- Mark executions whose lease expired as lost and retry or fail their tasks.
SELECT execution_id, task_id FROM scitq.execution_expire_leases_v1(%(now)s);

-- name: execution_expiry_outcome
-- What became of executions just marked lost and of their tasks (for the decision log).
SELECT e.id AS execution_id, e.task_id, e.worker_name, e.attempt, e.lease_expires_at,
       t.status AS task_status, t.available_at, t.requeue_count, t.requeues,
       e.finished_at
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

-- name: execution_output_prune
SELECT scitq.execution_output_prune_v1(
    make_interval(secs => %(older_than_seconds)s::double precision), %(limit)s, %(now)s
) AS count;

-- name: execution_get
SELECT e.id, e.task_id, e.attempt, e.status, e.worker_name, e.assigned_at,
       e.download_started_at, e.run_started_at, e.upload_started_at, e.finished_at,
       e.lease_expires_at, e.return_code, e.failure_class, e.failure_reason, e.wall_seconds,
       e.cpu_user_seconds, e.cpu_system_seconds, e.peak_rss_bytes, e.bytes_in, e.bytes_out,
       e.cached_from_execution_id
FROM scitq.execution e
WHERE e.id = %(execution_id)s;

-- name: execution_output_read
-- Output chunks of one execution after the sequence number %(after_seq)s, in order: a range
-- of the primary key (execution_id, seq). %(streams)s keeps only those streams.
SELECT o.execution_id, o.seq, o.stream, o.at, o.text
FROM scitq.execution_output o
WHERE o.execution_id = %(execution_id)s
  AND o.seq > %(after_seq)s
  AND (%(streams)s::scitq.output_stream[] IS NULL
       OR o.stream = ANY (%(streams)s::scitq.output_stream[]))
ORDER BY o.seq
LIMIT %(limit)s;

-- name: execution_output_tail
-- The last %(limit)s chunks of one execution (of %(streams)s), oldest first: the same
-- index range read backwards.
SELECT tail.execution_id, tail.seq, tail.stream, tail.at, tail.text
FROM (
    SELECT o.execution_id, o.seq, o.stream, o.at, o.text
    FROM scitq.execution_output o
    WHERE o.execution_id = %(execution_id)s
      AND (%(streams)s::scitq.output_stream[] IS NULL
           OR o.stream = ANY (%(streams)s::scitq.output_stream[]))
    ORDER BY o.seq DESC
    LIMIT %(limit)s
) tail
ORDER BY tail.seq;

-- name: execution_output_before
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
