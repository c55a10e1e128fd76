-- Internal helpers shared by the API functions. Not granted to agents or readers.
--
-- SQLSTATEs raised by scitq functions (class SQ, unused by PostgreSQL itself); they are
-- translated into scitq.errors exceptions in scitq/db/connection.py:
--   SQ001  execution not live: not held by the calling worker, lost, finished or lease expired
--   SQ002  worker not owned: the session role may not act for that worker
--   SQ003  not found: unknown task, batch, worker or dependency
--   SQ004  invalid argument
--   SQ005  dependency cycle
--   SQ006  invalid transition: the object is not in a state that allows the operation

-- The time a function acts at. Tests and administrators may pass p_now to act at
-- another time; for anyone else (agents) it is the transaction time, so that an agent
-- cannot expire other workers' leases or keep its own alive by lying about the time.
CREATE OR REPLACE FUNCTION scitq.effective_now_v1(p_now timestamptz)
RETURNS timestamptz
LANGUAGE sql
STABLE
SET search_path = scitq, pg_temp
AS $$
    SELECT CASE
        WHEN p_now IS NOT NULL
             AND (pg_has_role(session_user, 'scitq_admin', 'MEMBER')
                  OR (SELECT rolsuper FROM pg_roles WHERE rolname = session_user))
            THEN p_now
        ELSE now()
    END;
$$;

-- The worker row, checked to belong to the calling role (session_user), locked.
CREATE OR REPLACE FUNCTION scitq.worker_check_v1(p_worker_id bigint)
RETURNS scitq.worker
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_worker scitq.worker;
BEGIN
    SELECT * INTO v_worker FROM scitq.worker WHERE id = p_worker_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % does not exist', p_worker_id
            USING ERRCODE = 'SQ003', HINT = 'the worker may have been deleted: register again';
    END IF;
    IF v_worker.login_role <> session_user THEN
        RAISE EXCEPTION 'role % may not act for worker % (%)', session_user, v_worker.name, p_worker_id
            USING ERRCODE = 'SQ002';
    END IF;
    RETURN v_worker;
END;
$$;

-- The batch id for a name, created if missing.
CREATE OR REPLACE FUNCTION scitq.batch_ensure_v1(p_batch text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    IF p_batch IS NULL OR p_batch = '' OR p_batch ~ '[/[:cntrl:]]' THEN
        RAISE EXCEPTION 'invalid batch name %: it must be non-empty, without "/" or control characters',
            quote_literal(coalesce(p_batch, 'NULL'))
            USING ERRCODE = 'SQ004';
    END IF;
    SELECT id INTO v_id FROM scitq.batch WHERE name = p_batch;
    IF NOT FOUND THEN
        INSERT INTO scitq.batch (name) VALUES (p_batch)
        ON CONFLICT (name) DO NOTHING
        RETURNING id INTO v_id;
        IF v_id IS NULL THEN  -- created concurrently
            SELECT id INTO v_id FROM scitq.batch WHERE name = p_batch;
        END IF;
    END IF;
    RETURN v_id;
END;
$$;

-- The id of an existing batch, or SQ003.
CREATE OR REPLACE FUNCTION scitq.batch_find_v1(p_batch text)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    SELECT id INTO v_id FROM scitq.batch WHERE name = p_batch;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'batch % does not exist', quote_literal(coalesce(p_batch, 'NULL'))
            USING ERRCODE = 'SQ003';
    END IF;
    RETURN v_id;
END;
$$;

-- Waiting dependents of the given tasks whose dependencies have now all succeeded become
-- pending. Dependents are locked (in id order, against deadlocks) before the check, and
-- the check is a separate statement: under READ COMMITTED it then sees the commit of a
-- concurrent transaction that finished another dependency of the same task.
CREATE OR REPLACE FUNCTION scitq.task_promote_dependents_v1(p_task_ids bigint[], p_now timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_dependents bigint[];
    v_count integer;
BEGIN
    SELECT array_agg(t.id ORDER BY t.id) INTO v_dependents
    FROM (
        SELECT t.id
        FROM scitq.task t
        WHERE t.id IN (
            SELECT d.task_id FROM scitq.task_dependency d WHERE d.depends_on_id = ANY (p_task_ids)
        )
          AND t.status = 'waiting'
        ORDER BY t.id
        FOR UPDATE
    ) t;
    IF v_dependents IS NULL THEN
        RETURN 0;
    END IF;

    UPDATE scitq.task t
    SET status = 'pending', status_changed_at = p_now, available_at = p_now
    WHERE t.id = ANY (v_dependents)
      AND t.status = 'waiting'
      AND NOT EXISTS (
          SELECT 1
          FROM scitq.task_dependency d
          JOIN scitq.task u ON u.id = d.depends_on_id
          WHERE d.task_id = t.id
            AND u.status <> 'succeeded'
      );
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count > 0 THEN
        PERFORM pg_notify('scitq_task_pending_v1', '');
    END IF;
    RETURN v_count;
END;
$$;

-- Every task that depends, directly or not, on one of p_task_ids and has not started is
-- canceled, with the reason and the originating task (the root cause when a task was
-- itself canceled because of another). p_what says what happened to it ('failed',
-- 'was canceled', 'was deleted'); NULL derives it from the root cause's status.
CREATE OR REPLACE FUNCTION scitq.task_cancel_dependents_v1(
    p_task_ids bigint[],
    p_what text,
    p_now timestamptz
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    WITH RECURSIVE origin (id, cause, what) AS (
        -- a task canceled because of another passes that root cause on
        SELECT c.id,
               coalesce(t.canceled_by_task_id, c.id),
               coalesce(p_what, CASE WHEN root.status = 'failed' THEN 'failed' ELSE 'was canceled' END)
        FROM unnest(p_task_ids) AS c (id)
        LEFT JOIN scitq.task t ON t.id = c.id
        LEFT JOIN scitq.task root ON root.id = coalesce(t.canceled_by_task_id, c.id)
    ),
    dependent (id, cause, what) AS (
        SELECT d.task_id, origin.cause, origin.what
        FROM origin
        JOIN scitq.task_dependency d ON d.depends_on_id = origin.id
        UNION
        SELECT d.task_id, dependent.cause, dependent.what
        FROM dependent
        JOIN scitq.task_dependency d ON d.depends_on_id = dependent.id
    ),
    target AS (
        SELECT DISTINCT ON (id) id, cause, what
        FROM dependent
        ORDER BY id, cause
    )
    UPDATE scitq.task t
    SET status = 'canceled',
        status_changed_at = p_now,
        cancel_reason = format('dependency task %s %s', target.cause, target.what),
        canceled_by_task_id = target.cause
    FROM target
    WHERE t.id = target.id
      -- only tasks that have not started; a running dependent is left to finish
      AND t.status IN ('waiting', 'pending', 'paused');
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- Tasks whose live execution just ended without success: back to pending after a
-- back-off while retries are left, else failed (and their dependents canceled).
-- p_count_attempt false gives the attempt back (an execution handed back unstarted).
CREATE OR REPLACE FUNCTION scitq.task_settle_failure_v1(
    p_task_ids bigint[],
    p_now timestamptz,
    p_count_attempt boolean DEFAULT true
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_failed bigint[];
    v_count integer;
BEGIN
    WITH settled AS (
        UPDATE scitq.task t
        SET retry_floor = t.retry_floor + CASE WHEN p_count_attempt THEN 0 ELSE 1 END,
            status = CASE
                WHEN NOT p_count_attempt OR t.attempt_count - t.retry_floor <= t.retries
                    THEN 'pending'::scitq.task_status
                ELSE 'failed'::scitq.task_status
            END,
            status_changed_at = p_now,
            -- exponential back-off from retry_delay_seconds, capped at one hour
            available_at = CASE
                WHEN NOT p_count_attempt THEN p_now
                ELSE p_now + make_interval(secs => least(
                    3600.0,
                    t.retry_delay_seconds * power(2, greatest(t.attempt_count - t.retry_floor - 1, 0))
                ))
            END
        -- a task canceled or deleted meanwhile keeps its state
        WHERE t.id = ANY (p_task_ids)
          AND t.status IN ('assigned', 'running')
        RETURNING t.id, t.status
    )
    SELECT array_agg(id) FILTER (WHERE status = 'failed'), count(*)
    INTO v_failed, v_count
    FROM settled;

    IF v_failed IS NOT NULL THEN
        PERFORM scitq.task_cancel_dependents_v1(v_failed, 'failed', p_now);
    END IF;
    IF v_count > coalesce(cardinality(v_failed), 0) THEN
        PERFORM pg_notify('scitq_task_pending_v1', '');
    END IF;
    RETURN v_count;
END;
$$;

-- Live executions whose lease has expired become lost, and their tasks are retried or
-- failed. Called by the scheduler, and by every claim so that work proceeds without it.
CREATE OR REPLACE FUNCTION scitq.execution_expire_leases_v1(p_now timestamptz DEFAULT now())
RETURNS TABLE (execution_id bigint, task_id bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_execution_ids bigint[];
    v_task_ids bigint[];
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    WITH expired AS (
        SELECT e.id
        FROM scitq.execution e
        WHERE e.status IN ('assigned', 'downloading', 'running', 'uploading')
          AND e.lease_expires_at < p_now
        ORDER BY e.lease_expires_at
        LIMIT 1000
        FOR UPDATE SKIP LOCKED
    ),
    lost AS (
        UPDATE scitq.execution e
        SET status = 'lost',
            failure_class = 'lost',
            failure_reason = 'lease expired: the worker stopped heartbeating',
            finished_at = p_now
        FROM expired
        WHERE e.id = expired.id
        RETURNING e.id, e.task_id
    )
    SELECT array_agg(lost.id), array_agg(lost.task_id)
    INTO v_execution_ids, v_task_ids
    FROM lost;

    IF v_task_ids IS NOT NULL THEN
        PERFORM scitq.task_settle_failure_v1(v_task_ids, p_now);
    END IF;
    RETURN QUERY SELECT * FROM unnest(v_execution_ids, v_task_ids);
END;
$$;
