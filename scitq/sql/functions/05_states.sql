-- The state machine of tasks and executions: the statuses each kind holds (scitq/states.py
-- is the vocabulary), the transitions allowed between them, and the two functions that
-- alone write task.status and execution.status. Adding a status: its enum value (a
-- migration), its classes below, its transitions, and the API functions that make them.

-- Status classes, as scitq/states.py defines them. Immutable SQL functions without a SET
-- clause, so that the planner inlines them: a query written with execution_is_live(status)
-- still matches the partial indexes on live executions (execution_*_live_idx).

-- Live: the task still has work ahead, and leaves its status without a user's action
-- (LIVE_TASK_STATUSES). The others are final: kept until a user retries the task.
CREATE OR REPLACE FUNCTION scitq.task_live_statuses()
RETURNS scitq.task_status[]
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT ARRAY['waiting', 'pending', 'assigned', 'running', 'paused']::scitq.task_status[];
$$;

-- Held: a worker holds the task (HELD_TASK_STATUSES); its live execution decides what next.
CREATE OR REPLACE FUNCTION scitq.task_held_statuses()
RETURNS scitq.task_status[]
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT ARRAY['assigned', 'running']::scitq.task_status[];
$$;

CREATE OR REPLACE FUNCTION scitq.task_is_live(p_status scitq.task_status)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT p_status = ANY (scitq.task_live_statuses());
$$;

CREATE OR REPLACE FUNCTION scitq.task_is_held(p_status scitq.task_status)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT p_status = ANY (scitq.task_held_statuses());
$$;

-- The phases of an execution on its worker, in order (EXECUTION_PHASES): a live execution
-- only moves forward through them.
CREATE OR REPLACE FUNCTION scitq.execution_phases()
RETURNS scitq.execution_status[]
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT ARRAY['assigned', 'downloading', 'running', 'uploading']::scitq.execution_status[];
$$;

-- Live: in one of the phases (LIVE_EXECUTION_STATUSES); the others are final.
CREATE OR REPLACE FUNCTION scitq.execution_is_live(p_status scitq.execution_status)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT p_status = ANY (scitq.execution_phases());
$$;

-- The transitions a task may make, and the functions that make them. A NULL from_status
-- is the status a task is created with.
CREATE OR REPLACE VIEW scitq.task_transition AS
SELECT x.from_status::scitq.task_status AS from_status,
       x.to_status::scitq.task_status AS to_status,
       x.made_by
FROM (
    VALUES
        (NULL, 'waiting', 'task_submit_v1: a dependency has not succeeded yet'),
        (NULL, 'pending', 'task_submit_v1: no dependency, or all succeeded'),
        (NULL, 'canceled', 'task_submit_v1: a dependency failed or was canceled'),
        ('waiting', 'pending', 'its last dependency succeeded (execution_finish_v1)'),
        ('waiting', 'paused', 'task_pause_v1'),
        ('waiting', 'canceled', 'task_cancel_v1, or a dependency failed for good'),
        ('pending', 'assigned', 'task_claim_v1'),
        ('pending', 'paused', 'task_pause_v1'),
        ('pending', 'canceled', 'task_cancel_v1, or a dependency failed for good'),
        -- not started yet, and a dependency runs again (task_rerun_v1, task_update_v1)
        ('pending', 'waiting', 'task_rerun_v1: a dependency runs again'),
        ('assigned', 'running', 'execution_set_phase_v2: the command started'),
        ('assigned', 'succeeded', 'execution_finish_v1'),
        ('assigned', 'failed', 'its execution ended without success and no retry is left'),
        ('assigned', 'pending', 'its execution ended without success: retried, or handed back'),
        ('assigned', 'canceled', 'task_cancel_v1'),
        ('running', 'succeeded', 'execution_finish_v1'),
        ('running', 'failed', 'its execution ended without success and no retry is left'),
        ('running', 'pending', 'its execution ended without success: retried, or handed back'),
        ('running', 'canceled', 'task_cancel_v1'),
        ('paused', 'waiting', 'task_resume_v1: a dependency has not succeeded yet'),
        ('paused', 'pending', 'task_resume_v1'),
        ('paused', 'canceled', 'task_cancel_v1, or a dependency failed for good'),
        -- a task that ran had its dependencies succeeded: a retry makes it pending
        ('failed', 'pending', 'task_retry_v1'),
        -- ... unless one of them was rerun meanwhile (task_rerun_v1)
        ('failed', 'waiting', 'task_retry_v1: a dependency runs again'),
        ('canceled', 'waiting', 'task_retry_v1: a dependency has not succeeded yet'),
        ('canceled', 'pending', 'task_retry_v1'),
        -- a user runs a succeeded task again (task_rerun_v1, task_update_v1)
        ('succeeded', 'pending', 'task_rerun_v1'),
        ('succeeded', 'waiting', 'task_rerun_v1: a dependency runs again')
) AS x (from_status, to_status, made_by);

-- The transitions an execution may make. A NULL from_status is the status it is created
-- with (by task_claim_v1). A live execution may skip phases, and may end in any of them.
CREATE OR REPLACE VIEW scitq.execution_transition AS
SELECT x.from_status::scitq.execution_status AS from_status,
       x.to_status::scitq.execution_status AS to_status,
       x.made_by
FROM (
    VALUES
        (NULL, 'assigned', 'task_claim_v1'),
        ('assigned', 'downloading', 'execution_set_phase_v2'),
        ('assigned', 'running', 'execution_set_phase_v2'),
        ('assigned', 'uploading', 'execution_set_phase_v2'),
        ('downloading', 'running', 'execution_set_phase_v2'),
        ('downloading', 'uploading', 'execution_set_phase_v2'),
        ('running', 'uploading', 'execution_set_phase_v2')
) AS x (from_status, to_status, made_by)
UNION ALL
-- every live execution may end, in each of the final statuses
SELECT phase.status,
       final.status,
       CASE final.status
           WHEN 'succeeded' THEN 'execution_finish_v1'
           WHEN 'failed' THEN 'execution_finish_v1'
           WHEN 'timeout' THEN 'execution_finish_v1, execution_timeout_v1'
           WHEN 'canceled' THEN 'execution_finish_v1, task_cancel_v1'
           WHEN 'lost' THEN 'execution_expire_leases_v1, worker_register_v1, worker_stop_v1, worker_delete_v1'
       END
FROM unnest(scitq.execution_phases()) WITH ORDINALITY AS phase (status, n)
CROSS JOIN unnest(enum_range(NULL::scitq.execution_status)) WITH ORDINALITY AS final (status, n)
WHERE NOT scitq.execution_is_live(final.status);

-- One value for all, or one per element: a one-element array is spread to p_length
-- elements, any other is returned as it is (the writers' arguments).
CREATE OR REPLACE FUNCTION scitq.array_spread(p_values anyarray, p_length integer)
RETURNS anyarray
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN cardinality(p_values) = 1 AND p_length > 1 THEN array_fill(p_values[1], ARRAY[p_length])
        ELSE p_values
    END;
$$;

-- The one writer of task.status. Moves each task of p_task_ids to its status in p_to (one
-- per task, or one for all) and sets status_changed_at; the task_event trigger records
-- every transition. Tasks whose status is not in p_from (when given) are left as they are:
-- a concurrent call moved them, and the caller's filter no longer holds. A transition not
-- in scitq.task_transition raises SQ006, naming the tasks, and the caller's transaction
-- changes nothing. Returns the tasks moved, as they are now.
--
-- What moves with a status:
--   available_at         a task that becomes waiting or pending is claimable from
--                        p_available_at (one per task, or one for all), p_now by default
--   attempt_count        + 1 when the task becomes assigned: an attempt starts
--   retry_floor,         leaving a final status (a retry or rerun by a user) gives a fresh retry
--   requeue_count        budget and a fresh count of free requeues; p_give_back makes a task
--                        that becomes pending a free requeue (its execution was lost or
--                        handed back): the attempt is given back, so that it does not count
--                        against the retries, and requeue_count counts one more
--   cancel_reason,       for a task that becomes canceled, p_cancel_reasons and
--   canceled_by_task_id  p_canceled_by_task_ids (one per task, or one for all); cleared
--                        when it leaves canceled
CREATE OR REPLACE FUNCTION scitq.task_set_status(
    p_task_ids bigint[],
    p_to scitq.task_status[],
    p_now timestamptz,
    p_from scitq.task_status[] DEFAULT NULL,
    p_available_at timestamptz[] DEFAULT NULL,
    p_cancel_reasons text[] DEFAULT NULL,
    p_canceled_by_task_ids bigint[] DEFAULT NULL,
    p_give_back boolean DEFAULT false
)
RETURNS SETOF scitq.task
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_length integer := coalesce(cardinality(p_task_ids), 0);
    v_count integer;
    v_refused text;
BEGIN
    IF v_length = 0 THEN
        RETURN;
    END IF;
    p_to := scitq.array_spread(p_to, v_length);
    p_available_at := scitq.array_spread(p_available_at, v_length);
    p_cancel_reasons := scitq.array_spread(p_cancel_reasons, v_length);
    p_canceled_by_task_ids := scitq.array_spread(p_canceled_by_task_ids, v_length);

    RETURN QUERY
    WITH move AS (
        SELECT *
        FROM unnest(p_task_ids, p_to, p_available_at, p_cancel_reasons, p_canceled_by_task_ids)
            AS m (task_id, to_status, available_at, cancel_reason, canceled_by)
    )
    UPDATE scitq.task t
    SET status = m.to_status,
        status_changed_at = p_now,
        available_at = CASE
            WHEN m.to_status IN ('waiting', 'pending') THEN coalesce(m.available_at, p_now)
            ELSE coalesce(m.available_at, t.available_at)
        END,
        attempt_count = t.attempt_count + CASE WHEN m.to_status = 'assigned' THEN 1 ELSE 0 END,
        retry_floor = CASE
            WHEN NOT scitq.task_is_live(t.status) THEN t.attempt_count
            WHEN p_give_back AND m.to_status = 'pending' THEN t.retry_floor + 1
            ELSE t.retry_floor
        END,
        requeue_count = CASE
            WHEN NOT scitq.task_is_live(t.status) THEN 0
            WHEN p_give_back AND m.to_status = 'pending' THEN t.requeue_count + 1
            ELSE t.requeue_count
        END,
        cancel_reason = CASE
            WHEN m.to_status = 'canceled' THEN m.cancel_reason
            WHEN t.status = 'canceled' THEN NULL
            ELSE t.cancel_reason
        END,
        canceled_by_task_id = CASE
            WHEN m.to_status = 'canceled' THEN m.canceled_by
            WHEN t.status = 'canceled' THEN NULL
            ELSE t.canceled_by_task_id
        END
    FROM move m
    WHERE t.id = m.task_id
      AND (p_from IS NULL OR t.status = ANY (p_from))
      -- the transition is allowed; compared as text keys against a list computed once,
      -- as a join would let the planner drive the update from every task of a status
      AND (t.status::text || ' -> ' || m.to_status::text) = ANY (ARRAY(
          SELECT x.from_status::text || ' -> ' || x.to_status::text
          FROM scitq.task_transition x
      ))
    RETURNING t.*;
    GET DIAGNOSTICS v_count = ROW_COUNT;

    -- Fewer moved than asked: skipped (not in p_from, or deleted), or refused. Only this
    -- case pays for the check; a task already at its new status is not refused.
    IF v_count < v_length THEN
        SELECT string_agg(format('task %s: %s -> %s', t.id, t.status, m.to_status), ', ' ORDER BY t.id)
        INTO v_refused
        FROM unnest(p_task_ids, p_to) AS m (task_id, to_status)
        JOIN scitq.task t ON t.id = m.task_id
        WHERE t.status IS DISTINCT FROM m.to_status
          AND (p_from IS NULL OR t.status = ANY (p_from))
          AND NOT EXISTS (
              SELECT 1
              FROM scitq.task_transition x
              WHERE x.from_status = t.status
                AND x.to_status = m.to_status
          );
        IF v_refused IS NOT NULL THEN
            RAISE EXCEPTION 'transition not allowed: %', v_refused
                USING ERRCODE = 'SQ006',
                      HINT = 'scitq.task_transition lists the transitions a task may make';
        END IF;
    END IF;

    -- Waiters (scitq.Client.wait: scitq/db/completion.py) hear that a batch has no live
    -- task left: one notification per batch and transaction (PostgreSQL folds equal
    -- ones), sent only by the change that ends the batch's last live tasks, as every
    -- NOTIFY serializes commits server-wide. Two transactions ending a batch's last tasks
    -- at the same moment may each see the other's as live: then none is sent, and
    -- waiters see the end at their fallback poll.
    IF EXISTS (SELECT 1 FROM unnest(p_to) AS s (status) WHERE NOT scitq.task_is_live(s.status)) THEN
        PERFORM pg_notify('scitq_batch_ended_v1', b.batch_id::text)
        FROM (SELECT DISTINCT t.batch_id FROM scitq.task t WHERE t.id = ANY (p_task_ids)) b
        WHERE NOT EXISTS (
            SELECT 1
            FROM scitq.task l
            WHERE l.batch_id = b.batch_id
              AND l.status = ANY (scitq.task_live_statuses())
        );
    END IF;
END;
$$;

-- The one writer of execution.status, as task_set_status is of task.status: moves each
-- execution of p_execution_ids to its status in p_to (one per execution, or one for all),
-- skips those whose status is not in p_from (when given), and raises SQ006 for a
-- transition not in scitq.execution_transition. Returns the executions moved.
--
-- What moves with a status:
--   download_started_at,  p_now when the execution enters that phase
--   run_started_at,
--   upload_started_at
--   finished_at           p_now when it ends (a final status)
--   failure_class         p_failure_classes (one per execution, or one for all), else the
--                         status for lost, timeout and canceled
--   failure_reason,       p_failure_reasons and the figures of execution_finish_v1 (one
--   return_code, ...      per execution; p_failure_reasons may also give one for all)
CREATE OR REPLACE FUNCTION scitq.execution_set_status(
    p_execution_ids bigint[],
    p_to scitq.execution_status[],
    p_now timestamptz,
    p_from scitq.execution_status[] DEFAULT NULL,
    p_failure_classes scitq.failure_class[] DEFAULT NULL,
    p_failure_reasons text[] DEFAULT NULL,
    p_return_codes integer[] DEFAULT NULL,
    p_wall_seconds double precision[] DEFAULT NULL,
    p_cpu_user_seconds double precision[] DEFAULT NULL,
    p_cpu_system_seconds double precision[] DEFAULT NULL,
    p_peak_rss_bytes bigint[] DEFAULT NULL,
    p_bytes_in bigint[] DEFAULT NULL,
    p_bytes_out bigint[] DEFAULT NULL
)
RETURNS SETOF scitq.execution
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_length integer := coalesce(cardinality(p_execution_ids), 0);
    v_count integer;
    v_refused text;
BEGIN
    IF v_length = 0 THEN
        RETURN;
    END IF;
    p_to := scitq.array_spread(p_to, v_length);
    p_failure_classes := scitq.array_spread(p_failure_classes, v_length);
    p_failure_reasons := scitq.array_spread(p_failure_reasons, v_length);

    RETURN QUERY
    WITH move AS (
        SELECT *
        FROM unnest(
            p_execution_ids, p_to, p_failure_classes, p_failure_reasons, p_return_codes,
            p_wall_seconds, p_cpu_user_seconds, p_cpu_system_seconds, p_peak_rss_bytes,
            p_bytes_in, p_bytes_out
        ) AS m (
            execution_id, to_status, failure_class, failure_reason, return_code,
            wall_seconds, cpu_user_seconds, cpu_system_seconds, peak_rss_bytes,
            bytes_in, bytes_out
        )
    )
    UPDATE scitq.execution e
    SET status = m.to_status,
        download_started_at = CASE WHEN m.to_status = 'downloading' THEN p_now ELSE e.download_started_at END,
        run_started_at = CASE WHEN m.to_status = 'running' THEN p_now ELSE e.run_started_at END,
        upload_started_at = CASE WHEN m.to_status = 'uploading' THEN p_now ELSE e.upload_started_at END,
        finished_at = CASE WHEN scitq.execution_is_live(m.to_status) THEN e.finished_at ELSE p_now END,
        failure_class = coalesce(
            m.failure_class,
            CASE WHEN m.to_status IN ('lost', 'timeout', 'canceled') THEN m.to_status::text END::scitq.failure_class,
            e.failure_class
        ),
        failure_reason = coalesce(m.failure_reason, e.failure_reason),
        return_code = coalesce(m.return_code, e.return_code),
        wall_seconds = coalesce(m.wall_seconds, e.wall_seconds),
        cpu_user_seconds = coalesce(m.cpu_user_seconds, e.cpu_user_seconds),
        cpu_system_seconds = coalesce(m.cpu_system_seconds, e.cpu_system_seconds),
        peak_rss_bytes = coalesce(m.peak_rss_bytes, e.peak_rss_bytes),
        bytes_in = coalesce(m.bytes_in, e.bytes_in),
        bytes_out = coalesce(m.bytes_out, e.bytes_out)
    FROM move m
    WHERE e.id = m.execution_id
      AND (p_from IS NULL OR e.status = ANY (p_from))
      -- the transition is allowed; compared as text keys against a list computed once,
      -- as a join would let the planner drive the update from every execution of a status
      AND (e.status::text || ' -> ' || m.to_status::text) = ANY (ARRAY(
          SELECT x.from_status::text || ' -> ' || x.to_status::text
          FROM scitq.execution_transition x
      ))
    RETURNING e.*;
    GET DIAGNOSTICS v_count = ROW_COUNT;

    -- Fewer moved than asked: skipped (not in p_from, or deleted), or refused.
    IF v_count < v_length THEN
        SELECT string_agg(format('execution %s: %s -> %s', e.id, e.status, m.to_status), ', ' ORDER BY e.id)
        INTO v_refused
        FROM unnest(p_execution_ids, p_to) AS m (execution_id, to_status)
        JOIN scitq.execution e ON e.id = m.execution_id
        WHERE e.status IS DISTINCT FROM m.to_status
          AND (p_from IS NULL OR e.status = ANY (p_from))
          AND NOT EXISTS (
              SELECT 1
              FROM scitq.execution_transition x
              WHERE x.from_status = e.status
                AND x.to_status = m.to_status
          );
        IF v_refused IS NOT NULL THEN
            RAISE EXCEPTION 'transition not allowed: %', v_refused
                USING ERRCODE = 'SQ006',
                      HINT = 'scitq.execution_transition lists the transitions an execution may make';
        END IF;
    END IF;
END;
$$;
