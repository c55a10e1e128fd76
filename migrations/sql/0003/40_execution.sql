-- Executions: claim, phases, output and finish (agent side). Every call names the worker
-- and is fenced: it acts only on live executions held by that worker whose lease has not
-- expired, and raises SQ001 (changing nothing) otherwise.

-- Claim up to p_limit runnable tasks for a worker, never more than its free slots
-- (concurrency + prefetch - live executions). One statement takes the rows with
-- FOR UPDATE SKIP LOCKED in priority then age order, backed by task_claim_idx; an
-- execution with a lease is created for each.
CREATE OR REPLACE FUNCTION scitq.task_claim_v1(
    p_worker_id bigint,
    p_limit integer,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (
    execution_id bigint,
    task_id bigint,
    attempt integer,
    lease_expires_at timestamptz,
    batch text,
    name text,
    command text,
    shell boolean,
    container text,
    container_options text,
    inputs text[],
    resources text[],
    output text,
    download_timeout_seconds double precision,
    run_timeout_seconds double precision,
    env jsonb
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
-- Walk task_claim_idx in order whatever the statistics say: right after a bulk submit,
-- before auto-analyze, the planner would otherwise sort every pending row of the batch.
SET enable_sort = off
SET enable_bitmapscan = off
-- the disabled paths inflate cost estimates; JIT compiling a 1 ms statement costs 300 ms
SET jit = off
AS $$
DECLARE
    v_worker scitq.worker := scitq.worker_check_v1(p_worker_id);
    v_limit integer;
    v_batch_ids bigint[];
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    IF p_limit IS NULL OR p_limit < 0 THEN
        RAISE EXCEPTION 'claim limit must be 0 or more, not %', p_limit USING ERRCODE = 'SQ004';
    END IF;
    UPDATE scitq.worker w SET last_heartbeat_at = p_now, status = 'online' WHERE w.id = p_worker_id;
    IF v_worker.is_paused OR v_worker.is_draining THEN
        RETURN;
    END IF;

    -- lost work is recovered even when no scheduler runs
    PERFORM scitq.execution_expire_leases_v1(p_now);

    -- in bigint: concurrency and prefetch may each be near the integer maximum
    SELECT least(p_limit, v_worker.concurrency::bigint + v_worker.prefetch - count(*))
    INTO v_limit
    FROM scitq.execution e
    WHERE e.worker_id = p_worker_id
      AND e.status IN ('assigned', 'downloading', 'running', 'uploading');
    IF v_limit <= 0 THEN
        RETURN;
    END IF;

    SELECT array_agg(b.id) INTO v_batch_ids
    FROM scitq.batch b
    WHERE NOT b.is_paused
      -- an empty list of batches means every batch
      AND (cardinality(v_worker.batches) = 0 OR b.name = ANY (v_worker.batches));
    IF v_batch_ids IS NULL THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH candidate AS (
        -- one index range per batch, merged: the index order holds within a batch only
        SELECT c.id
        FROM unnest(v_batch_ids) AS b (id)
        CROSS JOIN LATERAL (
            SELECT t.id, t.priority
            FROM scitq.task t
            WHERE t.batch_id = b.id
              AND t.status = 'pending'
              -- in retry back-off until available_at
              AND t.available_at <= p_now
            ORDER BY t.priority DESC, t.id
            LIMIT v_limit
            FOR UPDATE SKIP LOCKED
        ) c
        ORDER BY c.priority DESC, c.id
        LIMIT v_limit
    ),
    claimed AS (
        UPDATE scitq.task t
        SET status = 'assigned', status_changed_at = p_now, attempt_count = t.attempt_count + 1
        FROM candidate
        WHERE t.id = candidate.id
        RETURNING t.*
    ),
    created AS (
        INSERT INTO scitq.execution (
            task_id, worker_id, worker_name, attempt, status, assigned_at, lease_expires_at
        )
        SELECT claimed.id, p_worker_id, v_worker.name, claimed.attempt_count, 'assigned', p_now,
               p_now + make_interval(secs => v_worker.lease_seconds)
        FROM claimed
        RETURNING execution.id, execution.task_id, execution.attempt, execution.lease_expires_at
    )
    SELECT created.id, created.task_id, created.attempt, created.lease_expires_at, b.name,
           claimed.name, claimed.command, claimed.shell, claimed.container,
           claimed.container_options, claimed.inputs, claimed.resources, claimed.output,
           claimed.download_timeout_seconds, claimed.run_timeout_seconds, claimed.env
    FROM created
    JOIN claimed ON claimed.id = created.task_id
    JOIN scitq.batch b ON b.id = claimed.batch_id
    ORDER BY claimed.priority DESC, claimed.id;
END;
$$;

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
          AND e.status IN ('assigned', 'downloading', 'running', 'uploading')
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
    v_rank constant scitq.execution_status[] := ARRAY['assigned', 'downloading', 'running', 'uploading'];
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    PERFORM scitq.worker_check_v1(p_worker_id);
    IF p_phase IS NULL OR p_phase NOT IN ('downloading', 'running', 'uploading') THEN
        RAISE EXCEPTION 'phase must be downloading, running or uploading, not %', p_phase
            USING ERRCODE = 'SQ004';
    END IF;
    PERFORM scitq.execution_check_live_v1(p_worker_id, ARRAY[p_execution_id], p_now);
    SELECT e.status INTO v_current FROM scitq.execution e WHERE e.id = p_execution_id;
    IF v_current = p_phase THEN
        RETURN;
    END IF;
    IF array_position(v_rank, p_phase) < array_position(v_rank, v_current) THEN
        RAISE EXCEPTION 'execution % is % already: it cannot go back to %', p_execution_id, v_current, p_phase
            USING ERRCODE = 'SQ006';
    END IF;

    UPDATE scitq.execution e
    SET status = p_phase,
        download_started_at = CASE WHEN p_phase = 'downloading' THEN p_now ELSE e.download_started_at END,
        run_started_at = CASE WHEN p_phase = 'running' THEN p_now ELSE e.run_started_at END,
        upload_started_at = CASE WHEN p_phase = 'uploading' THEN p_now ELSE e.upload_started_at END
    WHERE e.id = p_execution_id;

    IF p_phase IN ('running', 'uploading') THEN
        UPDATE scitq.task t SET status = 'running', status_changed_at = p_now
        FROM scitq.execution e
        WHERE e.id = p_execution_id AND t.id = e.task_id AND t.status = 'assigned';
    END IF;
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
-- plans cached while the tables were small would scan them whole once they have grown
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_rank constant scitq.execution_status[] := ARRAY['assigned', 'downloading', 'running', 'uploading'];
    v_moved bigint[];
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    PERFORM scitq.worker_check_v1(p_worker_id);
    IF p_phase IS NULL OR p_phase NOT IN ('downloading', 'running', 'uploading') THEN
        RAISE EXCEPTION 'phase must be downloading, running or uploading, not %', p_phase
            USING ERRCODE = 'SQ004';
    END IF;
    IF p_execution_ids IS NULL OR cardinality(p_execution_ids) = 0 THEN
        RETURN 0;
    END IF;
    -- locks the live ones (in id order) and refuses the call if any is not live
    PERFORM scitq.execution_check_live_v1(p_worker_id, p_execution_ids, p_now);

    WITH moved AS (
        UPDATE scitq.execution e
        SET status = p_phase,
            download_started_at = CASE WHEN p_phase = 'downloading' THEN p_now ELSE e.download_started_at END,
            run_started_at = CASE WHEN p_phase = 'running' THEN p_now ELSE e.run_started_at END,
            upload_started_at = CASE WHEN p_phase = 'uploading' THEN p_now ELSE e.upload_started_at END
        WHERE e.id = ANY (p_execution_ids)
          -- only forward: the same or a later phase stays
          AND array_position(v_rank, e.status) < array_position(v_rank, p_phase)
        RETURNING e.task_id
    )
    SELECT array_agg(moved.task_id) INTO v_moved FROM moved;

    IF p_phase IN ('running', 'uploading') AND v_moved IS NOT NULL THEN
        UPDATE scitq.task t
        SET status = 'running', status_changed_at = p_now
        WHERE t.id = ANY (v_moved)
          AND t.status = 'assigned';
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

    INSERT INTO scitq.execution_output (execution_id, seq, stream, at, text)
    SELECT c.execution_id, c.seq, c.stream, p_now, c.text
    FROM unnest(p_execution_ids, p_seqs, p_streams, p_texts) AS c (execution_id, seq, stream, text)
    ON CONFLICT (execution_id, seq) DO NOTHING;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- Finish executions in one call. p_results is a JSON array of objects with
-- execution_id (required), return_code, failure_class (exit, timeout, oom, download,
-- upload, canceled), failure_reason, wall_seconds, cpu_user_seconds, cpu_system_seconds,
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
-- plans cached while the tables were small would scan them whole once they have grown
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_succeeded bigint[];
    v_failed bigint[];
    v_ids bigint[];
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
        WHERE r.failure_class NOT IN ('exit', 'timeout', 'oom', 'download', 'upload', 'canceled')
           OR r.wall_seconds < 0 OR r.cpu_user_seconds < 0 OR r.cpu_system_seconds < 0
           OR r.peak_rss_bytes < 0 OR r.bytes_in < 0 OR r.bytes_out < 0
    ) THEN
        RAISE EXCEPTION 'invalid result: failure_class must be exit, timeout, oom, download, upload or canceled, and resource figures must not be negative'
            USING ERRCODE = 'SQ004';
    END IF;

    v_ids := ARRAY(SELECT (r.v ->> 'execution_id')::bigint FROM jsonb_array_elements(p_results) r (v));
    PERFORM scitq.execution_check_live_v1(p_worker_id, v_ids, p_now);

    WITH result AS (
        SELECT DISTINCT ON (r.execution_id) r.*
        FROM jsonb_to_recordset(p_results) AS r (
            execution_id bigint, return_code integer, failure_class scitq.failure_class,
            failure_reason text, wall_seconds double precision, cpu_user_seconds double precision,
            cpu_system_seconds double precision, peak_rss_bytes bigint, bytes_in bigint,
            bytes_out bigint
        )
    ),
    finished AS (
        UPDATE scitq.execution e
        SET status = CASE
                WHEN r.failure_class IS NULL AND r.return_code = 0 THEN 'succeeded'
                WHEN r.failure_class = 'timeout' THEN 'timeout'
                WHEN r.failure_class = 'canceled' THEN 'canceled'
                ELSE 'failed'
            END::scitq.execution_status,
            failure_class = CASE
                WHEN r.failure_class IS NOT NULL THEN r.failure_class
                WHEN r.return_code IS DISTINCT FROM 0 THEN 'exit'
            END::scitq.failure_class,
            failure_reason = CASE
                WHEN r.failure_reason IS NOT NULL THEN r.failure_reason
                WHEN r.failure_class IS NULL AND r.return_code IS NULL THEN 'no return code reported'
            END,
            return_code = r.return_code,
            finished_at = p_now,
            wall_seconds = r.wall_seconds,
            cpu_user_seconds = r.cpu_user_seconds,
            cpu_system_seconds = r.cpu_system_seconds,
            peak_rss_bytes = r.peak_rss_bytes,
            bytes_in = r.bytes_in,
            bytes_out = r.bytes_out
        FROM result r
        WHERE e.id = r.execution_id
        RETURNING e.id, e.task_id, e.status
    )
    SELECT array_agg(finished.task_id ORDER BY finished.task_id) FILTER (WHERE finished.status = 'succeeded'),
           array_agg(finished.task_id ORDER BY finished.task_id) FILTER (WHERE finished.status <> 'succeeded')
    INTO v_succeeded, v_failed
    FROM finished;

    IF v_succeeded IS NOT NULL THEN
        UPDATE scitq.task t SET status = 'succeeded', status_changed_at = p_now
        WHERE t.id = ANY (v_succeeded) AND t.status IN ('assigned', 'running');
        PERFORM scitq.task_promote_dependents_v1(v_succeeded, p_now);
    END IF;
    IF v_failed IS NOT NULL THEN
        PERFORM scitq.task_settle_failure_v1(v_failed, p_now);
    END IF;

    RETURN QUERY
    SELECT e.id, e.status, t.id, t.status
    FROM scitq.execution e
    JOIN scitq.task t ON t.id = e.task_id
    WHERE e.id = ANY (v_ids)
    ORDER BY e.id;
END;
$$;
