-- Named queries of the agent protocol and of worker administration.

-- name: worker_register
SELECT * FROM scitq.worker_register_v1(
    %(name)s, %(hostname)s, %(batches)s::text[], %(concurrency)s::integer, %(prefetch)s::integer,
    %(cpu_count)s::integer, %(lease_seconds)s::double precision, %(now)s
);

-- name: worker_heartbeat
SELECT * FROM scitq.worker_heartbeat_v1(
    %(worker_id)s, %(execution_ids)s::bigint[], %(acked_signal_ids)s::bigint[], %(now)s
);

-- name: worker_stop
SELECT scitq.worker_stop_v1(%(worker_id)s, %(now)s) AS count;

-- name: worker_update
SELECT * FROM scitq.worker_update_v1(
    %(worker_id)s, %(concurrency)s::integer, %(prefetch)s::integer, %(batches)s::text[],
    %(is_paused)s::boolean, %(is_draining)s::boolean, %(is_permanent)s::boolean
);

-- name: worker_delete
SELECT scitq.worker_delete_v1(%(worker_id)s, %(now)s);

-- name: worker_create_role
SELECT * FROM scitq.worker_create_role_v1(%(worker_name)s, %(role)s, %(password_hash)s);

-- name: task_claim
SELECT * FROM scitq.task_claim_v1(%(worker_id)s, %(limit)s, %(now)s);

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
