-- Batches: actions on every task of a batch. Unknown batch names raise SQ003.

-- Stop claims from the batch; running tasks go on (signal them with batch_signal_v1).
CREATE OR REPLACE FUNCTION scitq.batch_pause_v1(p_batch text, p_now timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    UPDATE scitq.batch SET is_paused = true, paused_at = p_now
    WHERE id = scitq.batch_find_v1(p_batch) AND NOT is_paused;
END;
$$;

CREATE OR REPLACE FUNCTION scitq.batch_resume_v1(p_batch text, p_now timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    UPDATE scitq.batch SET is_paused = false, paused_at = NULL
    WHERE id = scitq.batch_find_v1(p_batch);
    PERFORM pg_notify('scitq_task_pending_v1', p_batch);
END;
$$;

-- The ids of the batch's tasks in one of p_statuses (SQ003 for an unknown batch).
CREATE OR REPLACE FUNCTION scitq.batch_task_ids(p_batch text, p_statuses scitq.task_status[])
RETURNS bigint[]
LANGUAGE sql
STABLE
SET search_path = scitq, pg_temp
AS $$
    SELECT ARRAY(
        SELECT t.id
        FROM scitq.task t
        WHERE t.batch_id = scitq.batch_find_v1(p_batch)
          AND t.status = ANY (p_statuses)
    );
$$;

-- Signal every live execution of the batch. Returns how many were signaled.
CREATE OR REPLACE FUNCTION scitq.batch_signal_v1(
    p_batch text,
    p_kind scitq.signal_kind,
    p_now timestamptz DEFAULT now()
)
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
    SELECT scitq.task_signal_v1(
        scitq.batch_task_ids(p_batch, scitq.task_held_statuses()), p_kind, p_now
    );
$$;

-- Cancel every unfinished task of the batch. Returns how many.
CREATE OR REPLACE FUNCTION scitq.batch_cancel_v1(
    p_batch text,
    p_reason text DEFAULT 'batch canceled by user',
    p_now timestamptz DEFAULT now()
)
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
    SELECT count(*)::integer
    FROM scitq.task_cancel_v1(
        scitq.batch_task_ids(p_batch, scitq.task_live_statuses()), p_reason, p_now
    );
$$;

-- Retry every failed or canceled task of the batch. Returns how many.
CREATE OR REPLACE FUNCTION scitq.batch_retry_v1(p_batch text, p_now timestamptz DEFAULT now())
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
    SELECT count(*)::integer
    FROM scitq.task_retry_v1(scitq.batch_task_ids(p_batch, '{failed, canceled}'), p_now);
$$;

-- Delete the batch with all its tasks, executions, output and recruiters. Live executions
-- are canceled first so that their agents stop them. Returns the number of tasks deleted.
CREATE OR REPLACE FUNCTION scitq.batch_delete_v1(p_batch text, p_now timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_batch_id bigint := scitq.batch_find_v1(p_batch);
    v_count integer;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    -- dependents in other batches are canceled, not left waiting
    v_count := scitq.task_delete_v1(
        ARRAY(SELECT t.id FROM scitq.task t WHERE t.batch_id = v_batch_id),
        p_now
    );
    DELETE FROM scitq.batch WHERE id = v_batch_id;
    RETURN v_count;
END;
$$;

-- Set the free requeues of the batch (how many times a task may be requeued without
-- spending a retry when its execution is lost or handed back): for its tasks, and for
-- those submitted to it later without their own. Returns how many tasks were changed.
CREATE OR REPLACE FUNCTION scitq.batch_set_requeues_v1(p_batch text, p_requeues integer)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_batch_id bigint := scitq.batch_find_v1(p_batch);
    v_count integer;
BEGIN
    IF p_requeues IS NULL OR p_requeues < 0 THEN
        RAISE EXCEPTION 'requeues must be 0 or more, not %', coalesce(p_requeues::text, 'NULL')
            USING ERRCODE = 'SQ004';
    END IF;
    UPDATE scitq.batch SET requeues = p_requeues WHERE id = v_batch_id;
    UPDATE scitq.task t SET requeues = p_requeues
    WHERE t.batch_id = v_batch_id AND t.requeues IS DISTINCT FROM p_requeues;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;
