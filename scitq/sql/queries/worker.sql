-- Named queries about workers: the agent protocol (register, heartbeat, stop),
-- administration, liveness tracking and reads.

-- name: worker_register
SELECT * FROM scitq.worker_register_v1(
    %(name)s, %(hostname)s, %(batches)s::text[], %(concurrency)s::integer, %(prefetch)s::integer,
    %(cpu_count)s::integer, %(lease_seconds)s::double precision, %(now)s
);

-- name: worker_heartbeat
-- The host's metrics ride along when the agent sampled them (NULL otherwise).
SELECT * FROM scitq.worker_heartbeat_v2(
    %(worker_id)s, %(execution_ids)s::bigint[], %(acked_signal_ids)s::bigint[],
    %(metrics)s::jsonb, %(now)s
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
SELECT * FROM scitq.worker_create_role_v2(
    %(worker_name)s, %(role)s, %(password_hash)s, %(batches)s::text[]
);

-- name: worker_role_set_batches
SELECT * FROM scitq.worker_role_set_batches_v1(%(role)s, %(batches)s::text[]);

-- name: worker_track_liveness
-- Record every worker whose liveness changed since the last call.
SELECT worker_id, worker_name, previous, liveness
FROM scitq.worker_track_liveness_v1(%(scheduler)s, %(now)s);

-- name: worker_list
SELECT w.*
FROM scitq.worker_overview w
ORDER BY w.worker_id;

-- name: worker_find
-- A worker by name, else by id (a name made of digits wins over the id).
SELECT w.id, w.name
FROM scitq.worker w
WHERE w.name = %(name)s
   OR w.id = %(worker_id)s::bigint
ORDER BY w.name = %(name)s DESC
LIMIT 1;

-- name: worker_liveness
-- Whether a worker of this name heartbeats, and from which host (an agent refuses to
-- become a worker that is live on another host).
SELECT w.name, w.hostname, w.liveness,
       extract(epoch FROM now() - w.last_heartbeat_at)::double precision AS seconds_since_heartbeat
FROM scitq.worker_overview w
WHERE w.name = %(name)s;

-- name: worker_metrics_recent
-- The host metrics of the last %(seconds)s seconds of every worker (or of one), oldest
-- first: a range of the primary key per worker.
SELECT m.*
FROM scitq.worker w
CROSS JOIN LATERAL (
    SELECT v.*
    FROM scitq.worker_metrics v
    WHERE v.worker_id = w.id
      AND v.at > now() - make_interval(secs => %(seconds)s)
) m
WHERE %(worker_id)s::bigint IS NULL OR w.id = %(worker_id)s::bigint
ORDER BY m.worker_id, m.at;
