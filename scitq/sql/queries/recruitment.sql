-- Named queries of cloud recruitment: recruiters, instances, cloud operations, and what
-- the recruit duty reads to decide.

-- name: recruiter_set
SELECT * FROM scitq.recruiter_set_v1(
    %(batch)s, %(provider)s, %(max_workers)s::integer, %(flavor)s, %(image)s, %(region)s,
    %(concurrency)s::integer, %(prefetch)s::integer, %(min_workers)s::integer,
    %(tasks_per_worker)s::integer, %(rank)s::integer
);

-- name: recruiter_update
SELECT * FROM scitq.recruiter_update_v1(
    %(recruiter_id)s, %(provider)s, %(max_workers)s::integer, %(flavor)s, %(image)s,
    %(region)s, %(concurrency)s::integer, %(prefetch)s::integer, %(min_workers)s::integer,
    %(tasks_per_worker)s::integer
);

-- name: recruiter_delete
SELECT scitq.recruiter_delete_v1(%(recruiter_id)s);

-- name: recruiter_list
-- Recruiters with their batch, instance and worker counts, optionally of one batch.
SELECT r.*,
       (SELECT count(*) FROM scitq.worker w WHERE w.recruiter_id = r.recruiter_id) AS workers
FROM scitq.recruiter_overview r
WHERE %(batch)s::text IS NULL OR r.batch = %(batch)s::text
ORDER BY r.batch, r.rank, r.recruiter_id;

-- name: recruiter_find
-- One recruiter by id, or by batch and rank.
SELECT *
FROM scitq.recruiter_overview
WHERE (%(recruiter_id)s::bigint IS NOT NULL AND recruiter_id = %(recruiter_id)s::bigint)
   OR (%(recruiter_id)s::bigint IS NULL AND batch = %(batch)s::text AND rank = %(rank)s::integer);

-- name: recruiter_decisions
-- The latest decisions about a recruiter, newest first.
SELECT id, at, duty, decision, reason, details, scheduler
FROM scitq.scheduler_log
WHERE subject_kind = 'recruiter'
  AND subject_id = %(recruiter_id)s::bigint
ORDER BY id DESC
LIMIT %(limit)s::integer;

-- name: instance_request
SELECT * FROM scitq.instance_request_v1(
    %(provider)s, %(batch)s, %(count)s::integer, %(concurrency)s::integer,
    %(prefetch)s::integer, %(flavor)s, %(image)s, %(region)s, %(recruiter_id)s::bigint,
    %(is_permanent)s::boolean, %(name_prefix)s, %(now)s
);

-- name: instance_release
SELECT scitq.instance_release_v1(%(instance_id)s, %(reason)s, %(now)s) AS operation_id;

-- name: instance_reassign
SELECT * FROM scitq.instance_reassign_v1(%(instance_id)s, %(recruiter_id)s);

-- name: instance_link_workers
SELECT * FROM scitq.instance_link_workers_v1(%(now)s);

-- name: instance_list
-- Instances with their worker's name, in id order: the live ones, the deleted ones too
-- if %(all)s, or those deleted in the last %(deleted_within_seconds)s; the newest
-- %(limit)s only when a limit is given.
SELECT i.*
FROM (
    SELECT o.*, w.name AS worker_name
    FROM scitq.instance_overview o
    LEFT JOIN scitq.worker w ON w.id = o.worker_id
    WHERE %(all)s::boolean
       OR o.status <> 'deleted'
       OR o.deleted_at > now() - make_interval(secs => %(deleted_within_seconds)s::double precision)
    ORDER BY o.instance_id DESC
    LIMIT %(limit)s::integer
) i
ORDER BY i.instance_id;

-- name: instance_refs
-- What the database knows of a provider's instances, by name and reference (to find
-- orphans: machines the provider runs that no live instance row accounts for).
SELECT i.id AS instance_id, i.name, i.provider_ref, i.status
FROM scitq.instance i
WHERE i.provider = %(provider)s
ORDER BY i.id;

-- name: cloud_operation_claim
SELECT * FROM scitq.cloud_operation_claim_v1(%(limit)s::integer, %(now)s);

-- name: cloud_operation_progress
SELECT scitq.cloud_operation_progress_v1(
    %(operation_id)s, %(message)s, %(progress)s::integer, %(provider_ref)s,
    %(worker_id)s::bigint, %(now)s
);

-- name: cloud_operation_finish
SELECT * FROM scitq.cloud_operation_finish_v1(
    %(operation_id)s, %(error_class)s, %(error)s, %(retry_after_seconds)s::double precision,
    %(now)s
);

-- name: cloud_operation_abandon
SELECT * FROM scitq.cloud_operation_abandon_v1(%(operation_ids)s::bigint[], %(reason)s, %(now)s);

-- name: cloud_operation_running
-- Operations marked running, with how long ago they were last updated.
SELECT o.id AS operation_id, o.kind, o.instance_id,
       extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - o.updated_at)::double precision
           AS idle_seconds
FROM scitq.cloud_operation o
WHERE o.status = 'running'
ORDER BY o.id;

-- name: cloud_operation_list
-- Cloud operations, newest first: the unfinished ones and those of the last day, or
-- all if %(all)s. The log in full, or its last %(log_chars)s characters.
SELECT o.operation_id, o.kind, o.status, o.provider, o.instance_id, o.instance_name,
       o.worker_id, o.progress, o.attempts, o.error_class, o.error, o.not_before,
       CASE WHEN %(log_chars)s::integer IS NULL THEN o.log
            ELSE right(o.log, %(log_chars)s::integer) END AS log,
       o.created_at, o.updated_at, o.finished_at
FROM scitq.cloud_operation_overview o
WHERE %(all)s::boolean
   OR o.status IN ('pending', 'running')
   OR o.finished_at > now() - interval '1 day'
ORDER BY o.operation_id DESC
LIMIT %(limit)s::integer;

-- name: recruit_state
-- What the recruit duty weighs for each recruiter, in (batch, rank) order:
--   pending, active, waiting: tasks of its batch runnable, claimed or running, and
--     waiting on dependencies;
--   serving: workers heartbeating within their lease, neither paused nor draining, that
--     serve the batch (workers serving every batch included);
--   starting: instances asked for this batch whose agent has not registered yet;
--   recruited: live instances of this recruiter; provider_live: of its provider;
--   failures: its deploys failed in a row since its last successful one, with the last.
SELECT r.id AS recruiter_id, b.name AS batch, b.is_paused AS batch_paused, r.rank,
       r.provider, r.flavor, r.image, r.region, r.concurrency, r.prefetch, r.min_workers,
       r.max_workers, r.tasks_per_worker,
       t.pending, t.active, t.waiting,
       s.serving,
       st.starting,
       rc.recruited,
       pl.provider_live,
       f.failures, f.last_failed_at, f.last_error_class, f.last_error
FROM (SELECT coalesce(%(now)s::timestamptz, now()) AS at) n
CROSS JOIN scitq.recruiter r
JOIN scitq.batch b ON b.id = r.batch_id
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE x.status = 'pending') AS pending,
           count(*) FILTER (WHERE x.status IN ('assigned', 'running')) AS active,
           count(*) FILTER (WHERE x.status = 'waiting') AS waiting
    FROM scitq.task x
    WHERE x.batch_id = b.id
      AND x.status IN ('pending', 'assigned', 'running', 'waiting')
) t
CROSS JOIN LATERAL (
    SELECT count(*) AS serving
    FROM scitq.worker w
    WHERE w.status = 'online'
      AND w.last_heartbeat_at > n.at - make_interval(secs => w.lease_seconds)
      AND NOT w.is_paused
      AND NOT w.is_draining
      AND w.concurrency > 0
      AND (w.batches = '{}' OR b.name = ANY (w.batches))
) s
CROSS JOIN LATERAL (
    SELECT count(*) AS starting
    FROM scitq.instance i
    WHERE i.batch = b.name
      AND i.status IN ('requested', 'building')
) st
CROSS JOIN LATERAL (
    SELECT count(*) AS recruited
    FROM scitq.instance i
    WHERE i.recruiter_id = r.id
      AND i.status IN ('requested', 'building', 'active')
) rc
CROSS JOIN LATERAL (
    SELECT count(*) AS provider_live
    FROM scitq.instance i
    WHERE i.provider = r.provider
      AND i.status IN ('requested', 'building', 'active', 'deleting')
) pl
CROSS JOIN LATERAL (
    SELECT count(*) AS failures,
           max(o.finished_at) AS last_failed_at,
           (array_agg(o.error_class ORDER BY o.id DESC))[1] AS last_error_class,
           (array_agg(o.error ORDER BY o.id DESC))[1] AS last_error
    FROM scitq.cloud_operation o
    JOIN scitq.instance i ON i.id = o.instance_id
    WHERE i.recruiter_id = r.id
      AND o.kind = 'deploy'
      AND o.status = 'failed'
      -- a deploy canceled before it started is no failure of the provider
      AND o.error_class IS NOT NULL
      AND o.id > coalesce((
          SELECT max(o2.id)
          FROM scitq.cloud_operation o2
          JOIN scitq.instance i2 ON i2.id = o2.instance_id
          WHERE i2.recruiter_id = r.id
            AND o2.kind = 'deploy'
            AND o2.status = 'succeeded'
      ), 0)
) f
ORDER BY b.name, r.rank;

-- name: recruit_reusable
-- Live non-permanent instances of a provider (and flavor, when given) whose worker is
-- online, runs nothing, and serves only batches with no unfinished task: they may serve
-- another batch instead of a new instance being created.
SELECT i.id AS instance_id, i.name, i.worker_id, i.batch AS previous_batch
FROM scitq.instance i
JOIN scitq.worker w ON w.id = i.worker_id
WHERE i.status = 'active'
  AND i.provider = %(provider)s
  AND (%(flavor)s::text IS NULL OR i.flavor = %(flavor)s::text)
  AND NOT i.is_permanent
  AND NOT w.is_permanent
  AND NOT w.is_draining
  AND w.status = 'online'
  AND w.last_heartbeat_at > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => w.lease_seconds)
  AND w.batches <> '{}'
  AND NOT EXISTS (
      SELECT 1 FROM scitq.execution e
      WHERE e.worker_id = w.id
        AND e.status IN ('assigned', 'downloading', 'running', 'uploading')
  )
  AND NOT EXISTS (
      SELECT 1 FROM scitq.task t
      JOIN scitq.batch b ON b.id = t.batch_id
      WHERE b.name = ANY (w.batches)
        AND t.status IN ('pending', 'assigned', 'running', 'waiting', 'paused')
  )
ORDER BY i.id
LIMIT %(limit)s::integer;

-- name: recruit_releasable
-- Live non-permanent instances that may be destroyed, with why:
--   idle: its worker runs nothing, no task is pending in the batches it serves, and it
--     finished its last execution (or became active) more than %(grace_seconds)s ago;
--   offline: its worker stopped or sent no heartbeat for its lease plus the grace;
--   never_registered: deployed more than %(boot_seconds)s ago and no agent registered.
-- unfinished: tasks of its recruiter's batch not done yet (min_workers applies while > 0).
SELECT i.id AS instance_id, i.name, i.worker_id, i.recruiter_id, i.batch, i.provider,
       r.min_workers,
       coalesce(u.unfinished, 0) AS unfinished,
       CASE
           WHEN i.status = 'building' THEN 'never_registered'
           WHEN w.id IS NULL OR w.status = 'stopped'
                OR w.last_heartbeat_at < n.at - make_interval(secs => w.lease_seconds + %(grace_seconds)s::double precision)
               THEN 'offline'
           ELSE 'idle'
       END AS why,
       extract(epoch FROM n.at - greatest(i.active_at, x.last_finished_at))::double precision
           AS idle_seconds
FROM (SELECT coalesce(%(now)s::timestamptz, now()) AS at) n
CROSS JOIN scitq.instance i
LEFT JOIN scitq.worker w ON w.id = i.worker_id
LEFT JOIN scitq.recruiter r ON r.id = i.recruiter_id
LEFT JOIN LATERAL (
    SELECT max(e.finished_at) AS last_finished_at,
           count(*) FILTER (WHERE e.status IN ('assigned', 'downloading', 'running', 'uploading')) AS live
    FROM scitq.execution e
    WHERE e.worker_id = w.id
) x ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS unfinished
    FROM scitq.task t
    WHERE t.batch_id = r.batch_id
      AND t.status IN ('pending', 'assigned', 'running', 'waiting')
) u ON true
WHERE NOT i.is_permanent
  AND coalesce(w.is_permanent, false) = false
  AND (
      -- never registered: building (deploy done or not) for longer than the boot time
      (i.status = 'building'
       AND i.created_at < n.at - make_interval(secs => %(boot_seconds)s::double precision)
       AND NOT EXISTS (
           SELECT 1 FROM scitq.cloud_operation o
           WHERE o.instance_id = i.id AND o.status IN ('pending', 'running')
       ))
      OR (i.status = 'active'
          AND (
              w.id IS NULL
              OR w.status = 'stopped'
              OR w.last_heartbeat_at < n.at - make_interval(secs => w.lease_seconds + %(grace_seconds)s::double precision)
              OR (coalesce(x.live, 0) = 0
                  AND greatest(i.active_at, x.last_finished_at)
                      < n.at - make_interval(secs => %(grace_seconds)s::double precision)
                  AND NOT EXISTS (
                      SELECT 1 FROM scitq.task t
                      JOIN scitq.batch b ON b.id = t.batch_id
                      WHERE t.status = 'pending'
                        AND (w.batches = '{}' OR b.name = ANY (w.batches))
                  ))
          ))
  )
ORDER BY i.id;
