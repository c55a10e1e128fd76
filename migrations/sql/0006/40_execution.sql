-- Executions: phases, output and finish (agent side), and their end when a lease expires
-- or a worker goes away. Every agent call names the worker and is fenced: it acts only on
-- live executions held by that worker whose lease has not expired, and raises SQ001
-- (changing nothing) otherwise. Statuses change through scitq.execution_set_status only
-- (05_states.sql); task_claim_v1 (10_task.sql) creates the executions.

-- Raise SQ001 unless every execution in p_execution_ids is live, held by the worker and
-- within its lease. Locks the executions (in id order).
CREATE OR REPLACE FUNCTION scitq.execution_check_live_v1(
    p_worker_id bigint,
    p_execution_ids bigint[],
    p_now timestamptz
)
RETURNS void
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_dead bigint[];
BEGIN
    WITH wanted AS (
        SELECT DISTINCT x.id FROM unnest(p_execution_ids) AS x (id)
    ),
    live AS (
        SELECT e.id
        FROM scitq.execution e
        WHERE e.id IN (SELECT wanted.id FROM wanted)
          AND e.worker_id = p_worker_id
          AND scitq.execution_is_live(e.status)
          AND e.lease_expires_at > p_now
        ORDER BY e.id
        FOR UPDATE
    )
    SELECT array_agg(wanted.id ORDER BY wanted.id) INTO v_dead
    FROM wanted
    WHERE wanted.id NOT IN (SELECT live.id FROM live);
    IF v_dead IS NOT NULL THEN
        RAISE EXCEPTION 'execution % is no longer held by worker %', array_to_string(v_dead, ', '), p_worker_id
            USING ERRCODE = 'SQ001',
                  DETAIL = array_to_string(v_dead, ','),
                  HINT = 'it was lost (lease expired), canceled or finished: stop this copy of the task';
    END IF;
END;
$$;

-- Record a phase: downloading, running or uploading. Phases only move forward; repeating
-- the current phase is accepted (a call retried after a lost connection).
CREATE OR REPLACE FUNCTION scitq.execution_set_phase_v1(
    p_worker_id bigint,
    p_execution_id bigint,
    p_phase scitq.execution_status,
    p_now timestamptz DEFAULT now()
)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_current scitq.execution_status;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    PERFORM scitq.execution_check_phase(p_worker_id, ARRAY[p_execution_id], p_phase, p_now);
    SELECT e.status INTO v_current FROM scitq.execution e WHERE e.id = p_execution_id;
    IF array_position(scitq.execution_phases(), p_phase) < array_position(scitq.execution_phases(), v_current) THEN
        RAISE EXCEPTION 'execution % is % already: it cannot go back to %', p_execution_id, v_current, p_phase
            USING ERRCODE = 'SQ006';
    END IF;
    PERFORM scitq.execution_move_to_phase(ARRAY[p_execution_id], p_phase, p_now);
END;
$$;

-- Record a phase for many executions of one worker in one call (the agent batches the
-- phases of all the executions that moved since its last report). An execution already
-- at or past the phase is left as it is, so a call retried after a lost connection, or
-- one that arrives after a later phase, changes nothing. Any execution that is not live
-- fails the whole call with SQ001 naming every such id in DETAIL: the agent stops those
-- copies and sends the rest again.
CREATE OR REPLACE FUNCTION scitq.execution_set_phase_v2(
    p_worker_id bigint,
    p_execution_ids bigint[],
    p_phase scitq.execution_status,
    p_now timestamptz DEFAULT now()
)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
-- the agent's report pass: see task_claim_v1 for these settings
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    -- locks the live ones (in id order) and refuses the call if any is not live
    PERFORM scitq.execution_check_phase(p_worker_id, p_execution_ids, p_phase, p_now);
    IF p_execution_ids IS NULL OR cardinality(p_execution_ids) = 0 THEN
        RETURN 0;
    END IF;
    RETURN scitq.execution_move_to_phase(p_execution_ids, p_phase, p_now);
END;
$$;

-- The checks of a phase report: the worker's role, the phase, and that every execution
-- is live and held by the worker (locking them, in id order; SQ001 otherwise).
CREATE OR REPLACE FUNCTION scitq.execution_check_phase(
    p_worker_id bigint,
    p_execution_ids bigint[],
    p_phase scitq.execution_status,
    p_now timestamptz
)
RETURNS void
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
BEGIN
    PERFORM scitq.worker_check_v1(p_worker_id);
    IF p_phase IS NULL OR p_phase NOT IN ('downloading', 'running', 'uploading') THEN
        RAISE EXCEPTION 'phase must be downloading, running or uploading, not %', p_phase
            USING ERRCODE = 'SQ004';
    END IF;
    IF cardinality(p_execution_ids) > 0 THEN
        PERFORM scitq.execution_check_live_v1(p_worker_id, p_execution_ids, p_now);
    END IF;
END;
$$;

-- Live executions (checked and locked) move forward to p_phase; those at or past it stay.
-- Their tasks are running once the command has started. Returns how many moved.
CREATE OR REPLACE FUNCTION scitq.execution_move_to_phase(
    p_execution_ids bigint[],
    p_phase scitq.execution_status,
    p_now timestamptz
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_moved bigint[];
BEGIN
    SELECT array_agg(e.task_id) INTO v_moved
    FROM scitq.execution_set_status(
        p_execution_ids,
        ARRAY[p_phase],
        p_now,
        -- only forward: the phases before p_phase
        p_from => (scitq.execution_phases())[1 : array_position(scitq.execution_phases(), p_phase) - 1]
    ) e;

    IF p_phase IN ('running', 'uploading') AND v_moved IS NOT NULL THEN
        PERFORM scitq.task_set_status(v_moved, '{running}', p_now, p_from => '{assigned}');
    END IF;
    RETURN coalesce(cardinality(v_moved), 0);
END;
$$;

-- Output text is compressed with lz4 where the server was built with it: pglz costs about
-- four times more CPU per stored megabyte, and the agent's output rate depends on it
-- (bench/RESULTS.md). Without lz4 the column keeps the server's default.
DO $$
BEGIN
    ALTER TABLE scitq.execution_output ALTER COLUMN text SET COMPRESSION lz4;
EXCEPTION
    WHEN feature_not_supported OR invalid_parameter_value THEN
        RAISE NOTICE 'lz4 is not available: output text stays pglz-compressed';
END;
$$;

-- Append output chunks of one or more executions in one call (parallel arrays, one
-- element per chunk). seq numbers are the agent's, per execution: a chunk sent twice
-- (a retry after a lost connection) is stored once. Text must be valid and free of NUL
-- bytes (the agent escapes them); a bad chunk fails the call and nothing is stored.
CREATE OR REPLACE FUNCTION scitq.execution_append_output_v1(
    p_worker_id bigint,
    p_execution_ids bigint[],
    p_seqs integer[],
    p_streams scitq.output_stream[],
    p_texts text[],
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
    PERFORM scitq.worker_check_v1(p_worker_id);
    IF cardinality(p_execution_ids) IS DISTINCT FROM cardinality(p_seqs)
       OR cardinality(p_execution_ids) IS DISTINCT FROM cardinality(p_streams)
       OR cardinality(p_execution_ids) IS DISTINCT FROM cardinality(p_texts) THEN
        RAISE EXCEPTION 'output arrays must have the same length (% ids, % seqs, % streams, % texts)',
            cardinality(p_execution_ids), cardinality(p_seqs), cardinality(p_streams), cardinality(p_texts)
            USING ERRCODE = 'SQ004';
    END IF;
    IF EXISTS (
        SELECT 1 FROM unnest(p_seqs, p_streams, p_texts) AS c (seq, stream, text)
        WHERE c.seq IS NULL OR c.seq < 0 OR c.stream IS NULL OR c.text IS NULL
    ) THEN
        RAISE EXCEPTION 'output chunks need a sequence number >= 0, a stream and a text'
            USING ERRCODE = 'SQ004';
    END IF;
    PERFORM scitq.execution_check_live_v1(p_worker_id, p_execution_ids, p_now);

    -- retained is false for every row an agent writes (65_retention.sql), so the key
    -- (execution_id, seq, retained) still stores a chunk sent twice once
    INSERT INTO scitq.execution_output (execution_id, seq, retained, stream, at, text)
    SELECT c.execution_id, c.seq, false, c.stream, p_now, c.text
    FROM unnest(p_execution_ids, p_seqs, p_streams, p_texts) AS c (execution_id, seq, stream, text)
    ON CONFLICT (execution_id, seq, retained) DO NOTHING;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- scitq v1's use_cache, agent side: before it finishes an execution of a task with
-- use_cache, the agent records the digest of its inputs' listing, the files it left in
-- the output folder ({relative path: size}) and, for a cache hit, the earlier succeeded
-- execution of the same cache key whose output it found in place (then the execution is
-- finished as a success without running). The execution keeps the task's cache key as it
-- is now: what it ran, whatever later edits of the task change. Fenced like every agent
-- call.
CREATE OR REPLACE FUNCTION scitq.execution_record_cache_v1(
    p_worker_id bigint,
    p_execution_id bigint,
    p_input_fingerprint text,
    p_output_manifest jsonb,
    p_cached_from_execution_id bigint DEFAULT NULL,
    p_now timestamptz DEFAULT now()
)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_cache_key text;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    PERFORM scitq.worker_check_v1(p_worker_id);
    PERFORM scitq.execution_check_live_v1(p_worker_id, ARRAY[p_execution_id], p_now);
    IF p_output_manifest IS NOT NULL AND (
        jsonb_typeof(p_output_manifest) <> 'object'
        OR EXISTS (SELECT 1 FROM jsonb_each(p_output_manifest) f WHERE jsonb_typeof(f.value) <> 'number')
    ) THEN
        RAISE EXCEPTION 'the output manifest must be a JSON object of file sizes' USING ERRCODE = 'SQ004';
    END IF;
    SELECT t.cache_key INTO v_cache_key
    FROM scitq.execution e
    JOIN scitq.task t ON t.id = e.task_id
    WHERE e.id = p_execution_id;
    IF v_cache_key IS NULL THEN
        RAISE EXCEPTION 'execution % is not of a task with use_cache', p_execution_id
            USING ERRCODE = 'SQ004';
    END IF;
    IF p_cached_from_execution_id IS NOT NULL AND NOT EXISTS (
        SELECT 1
        FROM scitq.execution e
        WHERE e.id = p_cached_from_execution_id
          AND e.status = 'succeeded'
          AND e.cache_key = v_cache_key
    ) THEN
        RAISE EXCEPTION 'execution % is not a success of a task of the same cache key', p_cached_from_execution_id
            USING ERRCODE = 'SQ004';
    END IF;
    UPDATE scitq.execution e
    SET cache_key = v_cache_key,
        input_fingerprint = p_input_fingerprint,
        output_manifest = p_output_manifest,
        cached_from_execution_id = p_cached_from_execution_id
    WHERE e.id = p_execution_id;
END;
$$;

-- Finish executions in one call. p_results is a JSON array of objects with
-- execution_id (required), return_code, failure_class (exit, timeout, oom, download,
-- upload, canceled, runtime), failure_reason, wall_seconds, cpu_user_seconds, cpu_system_seconds,
-- peak_rss_bytes, bytes_in, bytes_out. Success is return_code 0 with no failure_class.
-- A success promotes the task's dependents; a failure retries the task after a back-off
-- or fails it (and cancels its dependents) when no retry is left.
CREATE OR REPLACE FUNCTION scitq.execution_finish_v1(
    p_worker_id bigint,
    p_results jsonb,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (execution_id bigint, execution_status scitq.execution_status, task_id bigint, task_status scitq.task_status)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
-- the agent's report pass: see task_claim_v1 for these settings
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    v_ids bigint[];
    v_finished bigint[];
    v_to scitq.execution_status[];
    v_classes scitq.failure_class[];
    v_reasons text[];
    v_return_codes integer[];
    v_wall double precision[];
    v_cpu_user double precision[];
    v_cpu_system double precision[];
    v_peak_rss bigint[];
    v_bytes_in bigint[];
    v_bytes_out bigint[];
    v_succeeded bigint[];
    v_succeeded_executions bigint[];
    v_failed bigint[];
    v_replayed bigint[];
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    PERFORM scitq.worker_check_v1(p_worker_id);
    IF jsonb_typeof(p_results) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'results must be a JSON array of objects' USING ERRCODE = 'SQ004';
    END IF;
    IF EXISTS (
        SELECT 1 FROM jsonb_array_elements(p_results) r (v)
        WHERE jsonb_typeof(r.v) <> 'object' OR jsonb_typeof(r.v -> 'execution_id') IS DISTINCT FROM 'number'
    ) THEN
        RAISE EXCEPTION 'every result needs a numeric execution_id' USING ERRCODE = 'SQ004';
    END IF;
    IF EXISTS (
        SELECT 1
        FROM jsonb_to_recordset(p_results) AS r (
            failure_class text, wall_seconds double precision, cpu_user_seconds double precision,
            cpu_system_seconds double precision, peak_rss_bytes bigint, bytes_in bigint, bytes_out bigint
        )
        WHERE r.failure_class NOT IN ('exit', 'timeout', 'oom', 'download', 'upload', 'canceled', 'runtime')
           OR r.wall_seconds < 0 OR r.cpu_user_seconds < 0 OR r.cpu_system_seconds < 0
           OR r.peak_rss_bytes < 0 OR r.bytes_in < 0 OR r.bytes_out < 0
    ) THEN
        RAISE EXCEPTION 'invalid result: failure_class must be exit, timeout, oom, download, upload, canceled or runtime, and resource figures must not be negative'
            USING ERRCODE = 'SQ004';
    END IF;

    -- A result sent again because the answer to its first sending was lost (the
    -- connection broke after the commit: a failover, a restart) is a replay: an
    -- execution of this worker that already ended with that very result is returned as
    -- it is instead of being refused as no longer live.
    v_ids := ARRAY(SELECT (r.v ->> 'execution_id')::bigint FROM jsonb_array_elements(p_results) r (v));
    v_replayed := ARRAY(
        SELECT e.id
        FROM jsonb_to_recordset(p_results) AS r (execution_id bigint, return_code integer, failure_class text)
        JOIN scitq.execution e ON e.id = r.execution_id
        -- by key, whatever the plan's estimates (a join alone was planned as a walk
        -- over every execution, the reports inside)
        WHERE e.id = ANY (v_ids)
          AND e.worker_id = p_worker_id
          AND NOT scitq.execution_is_live(e.status)
          AND e.return_code IS NOT DISTINCT FROM r.return_code
          AND e.status::text = CASE
                WHEN r.failure_class IS NULL AND r.return_code = 0 THEN 'succeeded'
                WHEN r.failure_class IN ('timeout', 'canceled') THEN r.failure_class
                ELSE 'failed'
              END
    );
    p_results := coalesce((
        SELECT jsonb_agg(r.v ORDER BY r.n)
        FROM jsonb_array_elements(p_results) WITH ORDINALITY AS r (v, n)
        WHERE (r.v ->> 'execution_id')::bigint <> ALL (v_replayed)
    ), '[]'::jsonb);
    PERFORM scitq.execution_check_live_v1(
        p_worker_id, ARRAY(SELECT x.id FROM unnest(v_ids) AS x (id) WHERE x.id <> ALL (v_replayed)), p_now
    );
    IF p_results = '[]'::jsonb THEN  -- nothing but replays
        RETURN QUERY
        SELECT e.id, e.status, t.id, t.status
        FROM scitq.execution e
        JOIN scitq.task t ON t.id = e.task_id
        WHERE e.id = ANY (v_ids)
        ORDER BY e.id;
        RETURN;
    END IF;

    SELECT array_agg(r.execution_id),
           array_agg(CASE
               WHEN r.failure_class IS NULL AND r.return_code = 0 THEN 'succeeded'
               WHEN r.failure_class = 'timeout' THEN 'timeout'
               WHEN r.failure_class = 'canceled' THEN 'canceled'
               ELSE 'failed'
           END::scitq.execution_status),
           array_agg(CASE
               WHEN r.failure_class IS NOT NULL THEN r.failure_class
               WHEN r.return_code IS DISTINCT FROM 0 THEN 'exit'
           END::scitq.failure_class),
           array_agg(CASE
               WHEN r.failure_reason IS NOT NULL THEN r.failure_reason
               WHEN r.failure_class IS NULL AND r.return_code IS NULL THEN 'no return code reported'
           END),
           array_agg(r.return_code), array_agg(r.wall_seconds), array_agg(r.cpu_user_seconds),
           array_agg(r.cpu_system_seconds), array_agg(r.peak_rss_bytes), array_agg(r.bytes_in),
           array_agg(r.bytes_out)
    INTO v_finished, v_to, v_classes, v_reasons, v_return_codes, v_wall, v_cpu_user, v_cpu_system,
         v_peak_rss, v_bytes_in, v_bytes_out
    FROM (
        -- one result per execution: the first one given
        SELECT DISTINCT ON (r.execution_id) r.*
        FROM jsonb_to_recordset(p_results) AS r (
            execution_id bigint, return_code integer, failure_class scitq.failure_class,
            failure_reason text, wall_seconds double precision, cpu_user_seconds double precision,
            cpu_system_seconds double precision, peak_rss_bytes bigint, bytes_in bigint,
            bytes_out bigint
        )
    ) r;

    SELECT array_agg(f.task_id ORDER BY f.task_id) FILTER (WHERE f.status = 'succeeded'),
           array_agg(f.task_id ORDER BY f.task_id) FILTER (WHERE f.status <> 'succeeded'),
           array_agg(f.id) FILTER (WHERE f.status = 'succeeded')
    INTO v_succeeded, v_failed, v_succeeded_executions
    FROM scitq.execution_set_status(
        v_finished, v_to, p_now,
        p_from => scitq.execution_phases(),
        p_failure_classes => v_classes,
        p_failure_reasons => v_reasons,
        p_return_codes => v_return_codes,
        p_wall_seconds => v_wall,
        p_cpu_user_seconds => v_cpu_user,
        p_cpu_system_seconds => v_cpu_system,
        p_peak_rss_bytes => v_peak_rss,
        p_bytes_in => v_bytes_in,
        p_bytes_out => v_bytes_out
    ) f;

    IF v_succeeded IS NOT NULL THEN
        PERFORM scitq.task_set_status(
            v_succeeded, '{succeeded}', p_now, p_from => scitq.task_held_statuses()
        );
        PERFORM scitq.task_promote_dependents_v1(v_succeeded, p_now);
    END IF;
    IF v_failed IS NOT NULL THEN
        PERFORM scitq.task_settle_failure_v1(v_failed, p_now);
    END IF;
    -- Durations of the batches' successes (scitq.batch_progress), last so that the
    -- worker's row is held only until the commit; a row per worker, so that agents
    -- finishing tasks of one batch do not queue on it.
    IF v_succeeded_executions IS NOT NULL THEN
        INSERT INTO scitq.batch_duration AS d (
            batch_id, worker_name, succeeded, total_seconds, max_seconds, run_total_seconds,
            run_max_seconds
        )
        SELECT t.batch_id, e.worker_name, count(*), sum(e.seconds), max(e.seconds),
               sum(e.run_seconds), max(e.run_seconds)
        FROM (
            SELECT x.task_id, x.worker_name,
                   extract(epoch FROM x.finished_at - x.assigned_at)::double precision AS seconds,
                   -- a cache hit ran nothing
                   coalesce(x.wall_seconds, 0) AS run_seconds
            FROM scitq.execution x
            WHERE x.id = ANY (v_succeeded_executions)
        ) e
        JOIN scitq.task t ON t.id = e.task_id
        GROUP BY t.batch_id, e.worker_name
        ORDER BY t.batch_id, e.worker_name
        ON CONFLICT (batch_id, worker_name) DO UPDATE
        SET succeeded = d.succeeded + excluded.succeeded,
            total_seconds = d.total_seconds + excluded.total_seconds,
            max_seconds = greatest(d.max_seconds, excluded.max_seconds),
            run_total_seconds = d.run_total_seconds + excluded.run_total_seconds,
            run_max_seconds = greatest(d.run_max_seconds, excluded.run_max_seconds);
    END IF;

    RETURN QUERY
    SELECT e.id, e.status, t.id, t.status
    FROM scitq.execution e
    JOIN scitq.task t ON t.id = e.task_id
    WHERE e.id = ANY (v_ids)
    ORDER BY e.id;
END;
$$;

-- Live executions of p_execution_ids end as p_to (lost or timeout) for p_reason, and
-- their tasks are retried after the back-off or failed (task_settle_failure_v1; with
-- p_count_attempt false it is a free requeue, and the reason of an execution whose task
-- has no free requeue left says so, and whether it spent a retry or failed the task). Executions no longer live
-- are skipped. Returns the executions ended, with their tasks.
CREATE OR REPLACE FUNCTION scitq.execution_end(
    p_execution_ids bigint[],
    p_to scitq.execution_status,
    p_reason text,
    p_now timestamptz,
    p_count_attempt boolean DEFAULT true
)
RETURNS TABLE (execution_id bigint, task_id bigint)
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_execution_ids bigint[];
    v_task_ids bigint[];
    v_reasons text[];
BEGIN
    v_reasons := ARRAY(
        SELECT CASE
            WHEN NOT p_count_attempt AND t.requeue_count >= t.requeues THEN format(
                '%s; no free requeue left (%s of %s used): %s', p_reason, t.requeue_count,
                t.requeues, CASE WHEN t.attempt_count - t.retry_floor <= t.retries
                                 THEN 'the attempt counts against the retries'
                                 ELSE 'the task fails' END)
            ELSE p_reason
        END
        FROM unnest(p_execution_ids) WITH ORDINALITY AS x (id, n)
        LEFT JOIN scitq.execution e ON e.id = x.id
        LEFT JOIN scitq.task t ON t.id = e.task_id
        ORDER BY x.n
    );
    SELECT array_agg(e.id), array_agg(e.task_id)
    INTO v_execution_ids, v_task_ids
    FROM scitq.execution_set_status(
        p_execution_ids, ARRAY[p_to], p_now,
        p_from => scitq.execution_phases(),
        p_failure_reasons => v_reasons
    ) e;
    IF v_task_ids IS NOT NULL THEN
        PERFORM scitq.task_settle_failure_v1(v_task_ids, p_now, p_count_attempt);
    END IF;
    RETURN QUERY SELECT * FROM unnest(v_execution_ids, v_task_ids);
END;
$$;

-- The live executions of a worker that restarted, stopped or was deleted are lost (see
-- execution_end). Returns how many.
CREATE OR REPLACE FUNCTION scitq.execution_end_of_worker(
    p_worker_id bigint,
    p_reason text,
    p_now timestamptz,
    p_count_attempt boolean DEFAULT true
)
RETURNS integer
LANGUAGE sql
SET search_path = scitq, pg_temp
AS $$
    SELECT count(*)::integer
    FROM scitq.execution_end(
        ARRAY(
            SELECT e.id
            FROM scitq.execution e
            WHERE e.worker_id = p_worker_id
              AND scitq.execution_is_live(e.status)
        ),
        'lost',
        p_reason,
        p_now,
        p_count_attempt
    );
$$;

-- Live executions whose lease has expired become lost, and their tasks are requeued
-- without spending a retry (a free requeue, bounded per task: task_settle_failure_v1).
-- Called by the scheduler, and by every claim so that work proceeds without it.
CREATE OR REPLACE FUNCTION scitq.execution_expire_leases_v1(p_now timestamptz DEFAULT now())
RETURNS TABLE (execution_id bigint, task_id bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    RETURN QUERY
    SELECT x.execution_id, x.task_id
    FROM scitq.execution_end(
        ARRAY(
            SELECT e.id
            FROM scitq.execution e
            WHERE scitq.execution_is_live(e.status)
              AND e.lease_expires_at < p_now
            ORDER BY e.lease_expires_at
            LIMIT 1000
            FOR UPDATE SKIP LOCKED
        ),
        'lost',
        'lease expired: the worker stopped heartbeating',
        p_now,
        p_count_attempt => false
    ) x;
END;
$$;
