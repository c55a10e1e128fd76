-- Scheduler: the decision log, worker liveness, timeouts and retention.
--
-- The scheduler (`scitq scheduler`) runs periodic duties; each decision it takes is a row
-- of scitq.scheduler_decision, so that users can ask what it did and why. These functions
-- are for admins (the scheduler logs in as one); readers see the log through the view
-- scitq.scheduler_log (granted in 95_scheduler_grants.sql, after 90_roles.sql).

-- Record decisions of one duty. p_decisions is a JSON array of objects with decision
-- (required, a short word: lost, kill, offline, ...), subject_kind and subject_id (what it
-- is about: execution 12, worker 3, ...), reason (a sentence) and details (an object).
-- p_scheduler names the scheduler process (host:pid). Returns the number recorded.
CREATE OR REPLACE FUNCTION scitq.scheduler_record_v1(
    p_duty text,
    p_decisions jsonb,
    p_scheduler text DEFAULT NULL,
    p_now timestamptz DEFAULT now()
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    IF p_duty IS NULL OR p_duty = '' THEN
        RAISE EXCEPTION 'a decision needs the name of its duty' USING ERRCODE = 'SQ004';
    END IF;
    IF jsonb_typeof(p_decisions) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'decisions must be a JSON array of objects' USING ERRCODE = 'SQ004';
    END IF;
    IF EXISTS (
        SELECT 1
        FROM jsonb_array_elements(p_decisions) AS d (v)
        WHERE jsonb_typeof(d.v) <> 'object'
           OR jsonb_typeof(d.v -> 'decision') IS DISTINCT FROM 'string'
           OR d.v ->> 'decision' = ''
           OR coalesce(jsonb_typeof(d.v -> 'subject_kind'), 'null') NOT IN ('string', 'null')
           OR coalesce(jsonb_typeof(d.v -> 'subject_id'), 'null') NOT IN ('number', 'null')
           OR coalesce(jsonb_typeof(d.v -> 'reason'), 'null') NOT IN ('string', 'null')
           OR coalesce(jsonb_typeof(d.v -> 'details'), 'null') NOT IN ('object', 'null')
           OR EXISTS (
               SELECT 1 FROM jsonb_object_keys(d.v) AS k (key)
               WHERE k.key NOT IN ('decision', 'subject_kind', 'subject_id', 'reason', 'details')
           )
    ) THEN
        RAISE EXCEPTION 'invalid decision: each needs a non-empty "decision" string; "subject_kind" and "reason" are strings, "subject_id" a number, "details" an object, and no other field is allowed'
            USING ERRCODE = 'SQ004';
    END IF;

    INSERT INTO scitq.scheduler_decision (
        at, duty, subject_kind, subject_id, decision, reason, details, scheduler
    )
    SELECT p_now, p_duty, d.v ->> 'subject_kind', (d.v ->> 'subject_id')::bigint,
           d.v ->> 'decision', d.v ->> 'reason',
           coalesce(nullif(d.v -> 'details', 'null'::jsonb), '{}'::jsonb), p_scheduler
    FROM jsonb_array_elements(p_decisions) WITH ORDINALITY AS d (v, n)
    ORDER BY d.n;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- Compare every worker's liveness (the rule of scitq.worker_overview, at p_now) with the
-- one recorded last time, store the new one and record each change as a decision of duty
-- worker_liveness: online (first seen, or heartbeats resumed), offline (no heartbeat
-- within its lease), stopped (its agent stopped cleanly). Returns the changes.
CREATE OR REPLACE FUNCTION scitq.worker_track_liveness_v1(
    p_scheduler text DEFAULT NULL,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (worker_id bigint, worker_name text, previous text, liveness text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    -- one tracker at a time, or two would record the same change twice
    LOCK TABLE scitq.worker_liveness IN SHARE ROW EXCLUSIVE MODE;

    RETURN QUERY
    WITH observed AS (
        SELECT w.id, w.name, w.hostname, w.last_heartbeat_at, w.lease_seconds,
               CASE
                   WHEN w.status = 'stopped' THEN 'stopped'
                   WHEN w.last_heartbeat_at > p_now - make_interval(secs => w.lease_seconds) THEN 'online'
                   ELSE 'offline'
               END AS now_liveness
        FROM scitq.worker w
    ),
    changed AS (
        SELECT o.*, l.liveness AS was
        FROM observed o
        LEFT JOIN scitq.worker_liveness l ON l.worker_id = o.id
        WHERE l.liveness IS DISTINCT FROM o.now_liveness
    ),
    stored AS (
        INSERT INTO scitq.worker_liveness AS l (worker_id, liveness, changed_at)
        SELECT c.id, c.now_liveness, p_now
        FROM changed c
        ON CONFLICT ON CONSTRAINT worker_liveness_pkey DO UPDATE
        SET liveness = excluded.liveness, changed_at = excluded.changed_at
    ),
    recorded AS (
        INSERT INTO scitq.scheduler_decision (
            at, duty, subject_kind, subject_id, decision, reason, details, scheduler
        )
        SELECT p_now, 'worker_liveness', 'worker', c.id, c.now_liveness,
               CASE
                   WHEN c.was IS NULL THEN format('worker %s first seen by the scheduler', c.name)
                   WHEN c.now_liveness = 'offline' THEN format(
                       'worker %s sent no heartbeat since %s (lease %s s)',
                       c.name,
                       coalesce(to_char(c.last_heartbeat_at, 'YYYY-MM-DD HH24:MI:SSTZH:TZM'),
                                'it was created'),
                       c.lease_seconds)
                   WHEN c.now_liveness = 'stopped' THEN format('worker %s was stopped by its agent', c.name)
                   ELSE format('worker %s heartbeats again', c.name)
               END,
               jsonb_build_object(
                   'name', c.name, 'hostname', c.hostname, 'previous', c.was,
                   'last_heartbeat_at', c.last_heartbeat_at, 'lease_seconds', c.lease_seconds
               ),
               p_scheduler
        FROM changed c
        ORDER BY c.id
    )
    SELECT c.id, c.name, c.was, c.now_liveness
    FROM changed c
    ORDER BY c.id;
END;
$$;

-- Mark live executions as timed out (status and failure class timeout, reason p_reason):
-- the scheduler's last resort for an execution past its timeout that its agent did not
-- stop after a kill signal. Their tasks are retried after the back-off or failed, as for
-- any failure; the agent learns it at its next heartbeat and kills its copy. Executions
-- that are no longer live are skipped. Returns the executions marked.
CREATE OR REPLACE FUNCTION scitq.execution_timeout_v1(
    p_execution_ids bigint[],
    p_reason text DEFAULT 'timed out',
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (execution_id bigint, task_id bigint, task_status scitq.task_status)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_execution_ids bigint[];
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    SELECT array_agg(x.execution_id) INTO v_execution_ids
    FROM scitq.execution_end(
        ARRAY(
            SELECT e.id
            FROM scitq.execution e
            WHERE e.id = ANY (p_execution_ids)
              AND scitq.execution_is_live(e.status)
            ORDER BY e.id
            FOR UPDATE
        ),
        'timeout',
        coalesce(p_reason, 'timed out'),
        p_now
    ) x;
    RETURN QUERY
    SELECT e.id, e.task_id, t.status
    FROM scitq.execution e
    JOIN scitq.task t ON t.id = e.task_id
    WHERE e.id = ANY (coalesce(v_execution_ids, '{}'))
    ORDER BY e.id;
END;
$$;

-- Delete the output of executions that finished more than p_older_than before p_now, at
-- most p_limit rows per call (call again while it returns p_limit). Live executions keep
-- their output whatever its age. Returns the number of rows deleted.
CREATE OR REPLACE FUNCTION scitq.execution_output_prune_v1(
    p_older_than interval,
    p_limit integer DEFAULT 10000,
    p_now timestamptz DEFAULT now()
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    IF p_older_than IS NULL OR p_older_than < interval '0' THEN
        RAISE EXCEPTION 'the age of output to delete must be 0 or more, not %', p_older_than
            USING ERRCODE = 'SQ004';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'the number of rows to delete must be 1 or more, not %', p_limit
            USING ERRCODE = 'SQ004';
    END IF;
    WITH doomed AS (
        SELECT o.execution_id, o.seq
        FROM scitq.execution e
        JOIN scitq.execution_output o ON o.execution_id = e.id
        -- finished_at is set by every final status and never by a live one
        WHERE e.finished_at < p_now - p_older_than
        LIMIT p_limit
    )
    DELETE FROM scitq.execution_output o
    USING doomed
    WHERE o.execution_id = doomed.execution_id
      AND o.seq = doomed.seq;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- Delete scheduler decisions older than p_older_than, at most p_limit per call. Returns
-- the number deleted.
CREATE OR REPLACE FUNCTION scitq.scheduler_decision_prune_v1(
    p_older_than interval,
    p_limit integer DEFAULT 10000,
    p_now timestamptz DEFAULT now()
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    IF p_older_than IS NULL OR p_older_than < interval '0' THEN
        RAISE EXCEPTION 'the age of decisions to delete must be 0 or more, not %', p_older_than
            USING ERRCODE = 'SQ004';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'the number of decisions to delete must be 1 or more, not %', p_limit
            USING ERRCODE = 'SQ004';
    END IF;
    DELETE FROM scitq.scheduler_decision d
    WHERE d.id IN (
        SELECT x.id
        FROM scitq.scheduler_decision x
        WHERE x.at < p_now - p_older_than
        ORDER BY x.at
        LIMIT p_limit
    );
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- The decision log for reporting: one row per decision, newest last by id.
CREATE OR REPLACE VIEW scitq.scheduler_log AS
SELECT d.id,
       d.at,
       d.duty,
       d.subject_kind,
       d.subject_id,
       d.decision,
       d.reason,
       d.details,
       d.scheduler
FROM scitq.scheduler_decision d;
