-- Cloud recruitment: recruiters (rules), instances (machines a provider runs for a
-- worker) and cloud operations (each deploy or destroy, with status, progress and log).
-- The scheduler decides; providers act outside any transaction and report through
-- cloud_operation_progress_v1 / cloud_operation_finish_v1.

-- Validate the fields of a recruiter (NULL: not given).
CREATE OR REPLACE FUNCTION scitq.recruiter_check_v1(
    p_provider text,
    p_concurrency integer,
    p_prefetch integer,
    p_min_workers integer,
    p_max_workers integer,
    p_tasks_per_worker integer,
    p_rank integer
)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = scitq, pg_temp
AS $$
BEGIN
    IF p_provider IS NOT NULL AND p_provider !~ '^[a-z][a-z0-9_-]{0,31}$' THEN
        RAISE EXCEPTION 'invalid provider name %: use lower-case letters, digits, "_" or "-"',
            quote_literal(p_provider) USING ERRCODE = 'SQ004';
    END IF;
    IF p_concurrency < 1 THEN
        RAISE EXCEPTION 'concurrency must be 1 or more, not %', p_concurrency USING ERRCODE = 'SQ004';
    END IF;
    IF p_prefetch < 0 THEN
        RAISE EXCEPTION 'prefetch must be 0 or more, not %', p_prefetch USING ERRCODE = 'SQ004';
    END IF;
    IF p_min_workers < 0 THEN
        RAISE EXCEPTION 'minimum workers must be 0 or more, not %', p_min_workers USING ERRCODE = 'SQ004';
    END IF;
    IF p_max_workers < 1 THEN
        RAISE EXCEPTION 'maximum workers must be 1 or more, not %', p_max_workers USING ERRCODE = 'SQ004';
    END IF;
    IF p_min_workers > p_max_workers THEN
        RAISE EXCEPTION 'minimum workers (%) must not exceed maximum workers (%)', p_min_workers, p_max_workers
            USING ERRCODE = 'SQ004';
    END IF;
    IF p_tasks_per_worker < 1 THEN
        RAISE EXCEPTION 'tasks per worker must be 1 or more, not %', p_tasks_per_worker USING ERRCODE = 'SQ004';
    END IF;
    IF p_rank < 1 THEN
        RAISE EXCEPTION 'rank must be 1 or more, not %', p_rank USING ERRCODE = 'SQ004';
    END IF;
END;
$$;

-- Create the recruiter of (batch, rank), or replace its fields (v1's create = upsert).
-- The batch is created if missing, so that a recruiter may come before its tasks.
CREATE OR REPLACE FUNCTION scitq.recruiter_set_v1(
    p_batch text,
    p_provider text,
    p_max_workers integer,
    p_flavor text DEFAULT NULL,
    p_image text DEFAULT NULL,
    p_region text DEFAULT NULL,
    p_concurrency integer DEFAULT 1,
    p_prefetch integer DEFAULT 0,
    p_min_workers integer DEFAULT 0,
    p_tasks_per_worker integer DEFAULT 1,
    p_rank integer DEFAULT 1
)
RETURNS scitq.recruiter
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_recruiter scitq.recruiter;
BEGIN
    IF p_provider IS NULL OR p_max_workers IS NULL OR p_concurrency IS NULL OR p_prefetch IS NULL
       OR p_min_workers IS NULL OR p_tasks_per_worker IS NULL OR p_rank IS NULL THEN
        RAISE EXCEPTION 'a recruiter needs a provider, maximum workers, concurrency, prefetch, minimum workers, tasks per worker and rank'
            USING ERRCODE = 'SQ004';
    END IF;
    PERFORM scitq.recruiter_check_v1(p_provider, p_concurrency, p_prefetch, p_min_workers,
                                     p_max_workers, p_tasks_per_worker, p_rank);
    INSERT INTO scitq.recruiter AS r (
        batch_id, rank, provider, flavor, image, region, concurrency, prefetch, min_workers,
        max_workers, tasks_per_worker
    )
    VALUES (
        scitq.batch_ensure_v1(p_batch), p_rank, p_provider, p_flavor, p_image, p_region,
        p_concurrency, p_prefetch, p_min_workers, p_max_workers, p_tasks_per_worker
    )
    ON CONFLICT (batch_id, rank) DO UPDATE
    SET provider = excluded.provider, flavor = excluded.flavor, image = excluded.image,
        region = excluded.region, concurrency = excluded.concurrency,
        prefetch = excluded.prefetch, min_workers = excluded.min_workers,
        max_workers = excluded.max_workers, tasks_per_worker = excluded.tasks_per_worker
    RETURNING r.* INTO v_recruiter;
    RETURN v_recruiter;
END;
$$;

-- Change some fields of a recruiter (NULL keeps a value; '' clears flavor, image, region).
CREATE OR REPLACE FUNCTION scitq.recruiter_update_v1(
    p_recruiter_id bigint,
    p_provider text DEFAULT NULL,
    p_max_workers integer DEFAULT NULL,
    p_flavor text DEFAULT NULL,
    p_image text DEFAULT NULL,
    p_region text DEFAULT NULL,
    p_concurrency integer DEFAULT NULL,
    p_prefetch integer DEFAULT NULL,
    p_min_workers integer DEFAULT NULL,
    p_tasks_per_worker integer DEFAULT NULL
)
RETURNS scitq.recruiter
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_old scitq.recruiter;
    v_recruiter scitq.recruiter;
BEGIN
    SELECT * INTO v_old FROM scitq.recruiter WHERE id = p_recruiter_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'recruiter % does not exist', p_recruiter_id USING ERRCODE = 'SQ003';
    END IF;
    PERFORM scitq.recruiter_check_v1(
        p_provider, p_concurrency, p_prefetch,
        coalesce(p_min_workers, v_old.min_workers), coalesce(p_max_workers, v_old.max_workers),
        p_tasks_per_worker, NULL
    );
    UPDATE scitq.recruiter r
    SET provider = coalesce(p_provider, r.provider),
        max_workers = coalesce(p_max_workers, r.max_workers),
        flavor = CASE WHEN p_flavor IS NULL THEN r.flavor ELSE nullif(p_flavor, '') END,
        image = CASE WHEN p_image IS NULL THEN r.image ELSE nullif(p_image, '') END,
        region = CASE WHEN p_region IS NULL THEN r.region ELSE nullif(p_region, '') END,
        concurrency = coalesce(p_concurrency, r.concurrency),
        prefetch = coalesce(p_prefetch, r.prefetch),
        min_workers = coalesce(p_min_workers, r.min_workers),
        tasks_per_worker = coalesce(p_tasks_per_worker, r.tasks_per_worker)
    WHERE r.id = p_recruiter_id
    RETURNING r.* INTO v_recruiter;
    RETURN v_recruiter;
END;
$$;

-- Delete a recruiter. Its instances stay: they are destroyed when idle, like any other.
CREATE OR REPLACE FUNCTION scitq.recruiter_delete_v1(p_recruiter_id bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    DELETE FROM scitq.recruiter WHERE id = p_recruiter_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'recruiter % does not exist', p_recruiter_id USING ERRCODE = 'SQ003';
    END IF;
END;
$$;

-- Ask a provider for p_count instances, each to run an agent serving p_batch: one
-- instance row (requested) and one pending deploy operation each, named
-- <p_name_prefix>-<instance id> (also the worker's name). The scheduler's operation
-- runner starts the deploys.
CREATE OR REPLACE FUNCTION scitq.instance_request_v1(
    p_provider text,
    p_batch text,
    p_count integer DEFAULT 1,
    p_concurrency integer DEFAULT 1,
    p_prefetch integer DEFAULT 0,
    p_flavor text DEFAULT NULL,
    p_image text DEFAULT NULL,
    p_region text DEFAULT NULL,
    p_recruiter_id bigint DEFAULT NULL,
    p_is_permanent boolean DEFAULT false,
    p_name_prefix text DEFAULT 'scitq',
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (instance_id bigint, operation_id bigint, name text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_instance scitq.instance;
    v_operation_id bigint;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    PERFORM scitq.recruiter_check_v1(p_provider, p_concurrency, p_prefetch, NULL, NULL, NULL, NULL);
    IF p_provider IS NULL THEN
        RAISE EXCEPTION 'a provider is required' USING ERRCODE = 'SQ004';
    END IF;
    IF p_count IS NULL OR p_count < 1 OR p_count > 1000 THEN
        RAISE EXCEPTION 'the number of instances must be between 1 and 1000, not %', p_count
            USING ERRCODE = 'SQ004';
    END IF;
    IF p_name_prefix IS NULL OR p_name_prefix !~ '^[a-z][a-z0-9-]{0,40}$' THEN
        RAISE EXCEPTION 'invalid name prefix %: lower-case letters, digits and "-"', quote_literal(coalesce(p_name_prefix, 'NULL'))
            USING ERRCODE = 'SQ004';
    END IF;
    PERFORM scitq.batch_ensure_v1(p_batch);
    FOR i IN 1 .. p_count LOOP
        INSERT INTO scitq.instance (
            provider, name, flavor, image, region, status, created_at, recruiter_id, batch,
            concurrency, prefetch, is_permanent
        )
        VALUES (
            p_provider, '', p_flavor, p_image, p_region, 'requested', p_now, p_recruiter_id,
            p_batch, coalesce(p_concurrency, 1), coalesce(p_prefetch, 0), coalesce(p_is_permanent, false)
        )
        RETURNING * INTO v_instance;
        UPDATE scitq.instance i SET name = p_name_prefix || '-' || i.id
        WHERE i.id = v_instance.id
        RETURNING * INTO v_instance;
        INSERT INTO scitq.cloud_operation (kind, instance_id, provider, status, created_at, updated_at)
        VALUES ('deploy', v_instance.id, p_provider, 'pending', p_now, p_now)
        RETURNING id INTO v_operation_id;
        instance_id := v_instance.id;
        operation_id := v_operation_id;
        name := v_instance.name;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Destroy an instance: its worker drains (claims nothing more) and a destroy operation is
-- queued. An instance whose deploy has not started is simply dropped. Returns the destroy
-- operation, or NULL when none was needed (already deleted or deleting, or not started).
CREATE OR REPLACE FUNCTION scitq.instance_release_v1(
    p_instance_id bigint,
    p_reason text DEFAULT 'released',
    p_now timestamptz DEFAULT now()
)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_instance scitq.instance;
    v_operation_id bigint;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    SELECT * INTO v_instance FROM scitq.instance WHERE id = p_instance_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'instance % does not exist', p_instance_id USING ERRCODE = 'SQ003';
    END IF;
    IF v_instance.status IN ('deleting', 'deleted') THEN
        RETURN NULL;
    END IF;
    -- a deploy still waiting to start: cancel it, nothing exists at the provider
    UPDATE scitq.cloud_operation o
    SET status = 'failed', error = 'canceled before it started: ' || coalesce(p_reason, 'released'),
        finished_at = p_now, updated_at = p_now
    WHERE o.instance_id = p_instance_id AND o.kind = 'deploy' AND o.status = 'pending';
    IF FOUND AND v_instance.provider_ref IS NULL THEN
        UPDATE scitq.instance SET status = 'deleted', deleted_at = p_now WHERE id = p_instance_id;
        RETURN NULL;
    END IF;
    UPDATE scitq.instance SET status = 'deleting' WHERE id = p_instance_id;
    IF v_instance.worker_id IS NOT NULL THEN
        UPDATE scitq.worker w SET is_draining = true, config_version = w.config_version + 1
        WHERE w.id = v_instance.worker_id AND NOT w.is_draining;
    END IF;
    INSERT INTO scitq.cloud_operation (
        kind, instance_id, worker_id, provider, status, created_at, updated_at, log
    )
    VALUES (
        'destroy', p_instance_id, v_instance.worker_id, v_instance.provider, 'pending', p_now, p_now,
        to_char(p_now AT TIME ZONE 'UTC', 'HH24:MI:SS') || ' ' || coalesce(p_reason, 'released') || E'\n'
    )
    RETURNING id INTO v_operation_id;
    RETURN v_operation_id;
END;
$$;

-- Give a live instance (and its worker) to another recruiter: its agent serves the
-- recruiter's batch with its concurrency and prefetch from its next heartbeat.
CREATE OR REPLACE FUNCTION scitq.instance_reassign_v1(p_instance_id bigint, p_recruiter_id bigint)
RETURNS scitq.instance
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_recruiter scitq.recruiter;
    v_batch text;
    v_instance scitq.instance;
BEGIN
    SELECT r.* INTO v_recruiter FROM scitq.recruiter r WHERE r.id = p_recruiter_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'recruiter % does not exist', p_recruiter_id USING ERRCODE = 'SQ003';
    END IF;
    SELECT b.name INTO v_batch FROM scitq.batch b WHERE b.id = v_recruiter.batch_id;
    UPDATE scitq.instance i
    SET recruiter_id = p_recruiter_id, batch = v_batch, concurrency = v_recruiter.concurrency,
        prefetch = v_recruiter.prefetch
    WHERE i.id = p_instance_id AND i.status IN ('building', 'active')
    RETURNING i.* INTO v_instance;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'instance % is not live', p_instance_id USING ERRCODE = 'SQ006';
    END IF;
    IF v_instance.worker_id IS NOT NULL THEN
        PERFORM scitq.worker_update_v1(
            v_instance.worker_id, v_recruiter.concurrency, v_recruiter.prefetch, ARRAY[v_batch]
        );
        UPDATE scitq.worker SET recruiter_id = p_recruiter_id WHERE id = v_instance.worker_id;
    END IF;
    RETURN v_instance;
END;
$$;

-- Claim up to p_limit pending operations whose back-off has passed: they become running
-- (attempts + 1). Each is returned with what its provider needs to act.
CREATE OR REPLACE FUNCTION scitq.cloud_operation_claim_v1(
    p_limit integer DEFAULT 1,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (
    operation_id bigint,
    kind scitq.cloud_operation_kind,
    attempts integer,
    instance_id bigint,
    provider text,
    provider_ref text,
    name text,
    flavor text,
    image text,
    region text,
    batch text,
    concurrency integer,
    prefetch integer,
    worker_id bigint
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    RETURN QUERY
    WITH picked AS (
        SELECT o.id
        FROM scitq.cloud_operation o
        WHERE o.status = 'pending'
          AND (o.not_before IS NULL OR o.not_before <= p_now)
        ORDER BY o.id
        LIMIT greatest(p_limit, 0)
        FOR UPDATE SKIP LOCKED
    ),
    started AS (
        UPDATE scitq.cloud_operation o
        SET status = 'running', attempts = o.attempts + 1, updated_at = p_now, not_before = NULL
        FROM picked
        WHERE o.id = picked.id
        RETURNING o.*
    ),
    building AS (
        UPDATE scitq.instance i
        SET status = 'building'
        FROM started s
        WHERE i.id = s.instance_id
          AND s.kind = 'deploy'
          AND i.status = 'requested'
    )
    SELECT s.id, s.kind, s.attempts, i.id, s.provider, i.provider_ref, i.name, i.flavor,
           i.image, i.region, i.batch, i.concurrency, i.prefetch, i.worker_id
    FROM started s
    JOIN scitq.instance i ON i.id = s.instance_id
    ORDER BY s.id;
END;
$$;

-- Report progress of a running operation: a log line (kept to the last 64 KiB), the
-- percentage, and the provider's reference of the instance once known.
CREATE OR REPLACE FUNCTION scitq.cloud_operation_progress_v1(
    p_operation_id bigint,
    p_message text DEFAULT NULL,
    p_progress integer DEFAULT NULL,
    p_provider_ref text DEFAULT NULL,
    p_worker_id bigint DEFAULT NULL,
    p_now timestamptz DEFAULT now()
)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_operation scitq.cloud_operation;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    UPDATE scitq.cloud_operation o
    SET log = right(o.log || CASE WHEN p_message IS NULL THEN '' ELSE
                  to_char(p_now AT TIME ZONE 'UTC', 'HH24:MI:SS') || ' ' || p_message || E'\n' END,
                  65536),
        progress = coalesce(least(greatest(p_progress, 0), 100), o.progress),
        worker_id = coalesce(p_worker_id, o.worker_id),
        updated_at = p_now
    WHERE o.id = p_operation_id
    RETURNING o.* INTO v_operation;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cloud operation % does not exist', p_operation_id USING ERRCODE = 'SQ003';
    END IF;
    IF p_provider_ref IS NOT NULL OR p_worker_id IS NOT NULL THEN
        UPDATE scitq.instance i
        SET provider_ref = coalesce(p_provider_ref, i.provider_ref),
            worker_id = coalesce(p_worker_id, i.worker_id)
        WHERE i.id = v_operation.instance_id;
    END IF;
END;
$$;

-- Delete a worker row and, if it is that worker's own agent role (made by
-- worker_create_role_v1 for a cloud instance), the role too; shared or administrative
-- roles stay.
CREATE OR REPLACE FUNCTION scitq.worker_forget_v1(p_worker_id bigint, p_now timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_role text;
BEGIN
    SELECT w.login_role INTO v_role FROM scitq.worker w WHERE w.id = p_worker_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM scitq.worker_delete_v1(p_worker_id, p_now);
    IF v_role IS NOT NULL AND v_role <> session_user AND v_role <> current_user
       AND pg_has_role(v_role, 'scitq_agent', 'MEMBER')
       AND NOT pg_has_role(v_role, 'scitq_admin', 'MEMBER')
       AND NOT EXISTS (SELECT 1 FROM scitq.worker w WHERE w.login_role = v_role) THEN
        EXECUTE format('DROP ROLE IF EXISTS %I', v_role);
    END IF;
END;
$$;

-- End a running operation. p_error_class NULL: it succeeded (a deploy leaves its instance
-- building until its worker registers; a destroy deletes the instance, the worker row and
-- the worker's own login role). Otherwise it failed with that class and message; with
-- p_retry_after_seconds it goes back to pending until then (a transient failure),
-- else it failed for good and its instance is in error.
CREATE OR REPLACE FUNCTION scitq.cloud_operation_finish_v1(
    p_operation_id bigint,
    p_error_class text DEFAULT NULL,
    p_error text DEFAULT NULL,
    p_retry_after_seconds double precision DEFAULT NULL,
    p_now timestamptz DEFAULT now()
)
RETURNS scitq.cloud_operation
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_operation scitq.cloud_operation;
    v_instance scitq.instance;
    v_stamp text;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    v_stamp := to_char(p_now AT TIME ZONE 'UTC', 'HH24:MI:SS') || ' ';
    SELECT * INTO v_operation FROM scitq.cloud_operation WHERE id = p_operation_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cloud operation % does not exist', p_operation_id USING ERRCODE = 'SQ003';
    END IF;
    IF v_operation.status <> 'running' THEN
        RAISE EXCEPTION 'cloud operation % is %, not running', p_operation_id, v_operation.status
            USING ERRCODE = 'SQ006';
    END IF;
    IF p_error_class IS NOT NULL
       AND p_error_class NOT IN ('quota', 'auth', 'capacity', 'transient', 'config', 'unknown') THEN
        RAISE EXCEPTION 'unknown error class %', quote_literal(p_error_class) USING ERRCODE = 'SQ004';
    END IF;
    SELECT * INTO v_instance FROM scitq.instance WHERE id = v_operation.instance_id FOR UPDATE;

    IF p_error_class IS NULL THEN
        UPDATE scitq.cloud_operation o
        SET status = 'succeeded', progress = 100, finished_at = p_now, updated_at = p_now,
            error = NULL, error_class = NULL, log = right(o.log || v_stamp || 'done' || E'\n', 65536)
        WHERE o.id = p_operation_id
        RETURNING o.* INTO v_operation;
        IF v_operation.kind = 'destroy' THEN
            UPDATE scitq.instance SET status = 'deleted', deleted_at = p_now
            WHERE id = v_instance.id;
            IF v_instance.worker_id IS NOT NULL THEN
                PERFORM scitq.worker_forget_v1(v_instance.worker_id, p_now);
            END IF;
        END IF;
        RETURN v_operation;
    END IF;

    -- a failed deploy: the worker row (and role) made for an agent that never came
    IF v_operation.kind = 'deploy' AND v_instance.worker_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM scitq.worker w
                       WHERE w.id = v_instance.worker_id AND w.last_heartbeat_at IS NOT NULL) THEN
        UPDATE scitq.instance SET worker_id = NULL WHERE id = v_instance.id;
        PERFORM scitq.worker_forget_v1(v_instance.worker_id, p_now);
    END IF;

    IF p_retry_after_seconds IS NOT NULL THEN
        UPDATE scitq.cloud_operation o
        SET status = 'pending', error_class = p_error_class, error = p_error, updated_at = p_now,
            not_before = p_now + make_interval(secs => p_retry_after_seconds),
            log = right(o.log || v_stamp || p_error_class || ' error: ' || coalesce(p_error, '?')
                        || format(' (attempt %s; retrying in %s s)', o.attempts, round(p_retry_after_seconds::numeric, 1))
                        || E'\n', 65536)
        WHERE o.id = p_operation_id
        RETURNING o.* INTO v_operation;
        RETURN v_operation;
    END IF;

    UPDATE scitq.cloud_operation o
    SET status = 'failed', error_class = p_error_class, error = p_error, updated_at = p_now,
        finished_at = p_now,
        log = right(o.log || v_stamp || p_error_class || ' error: ' || coalesce(p_error, '?')
                    || format(' (attempt %s; giving up)', o.attempts) || E'\n', 65536)
    WHERE o.id = p_operation_id
    RETURNING o.* INTO v_operation;
    UPDATE scitq.instance SET status = 'error' WHERE id = v_instance.id;
    RETURN v_operation;
END;
$$;

-- Operations left running by a scheduler that died: failed (class transient), so that
-- a new deploy may be decided and their instances reconciled. Returns them.
CREATE OR REPLACE FUNCTION scitq.cloud_operation_abandon_v1(
    p_operation_ids bigint[],
    p_reason text DEFAULT 'interrupted: the scheduler running it stopped',
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (operation_id bigint, kind scitq.cloud_operation_kind, instance_id bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    RETURN QUERY
    WITH abandoned AS (
        UPDATE scitq.cloud_operation o
        SET status = 'failed', error_class = 'transient', error = p_reason, finished_at = p_now,
            updated_at = p_now,
            log = right(o.log || to_char(p_now AT TIME ZONE 'UTC', 'HH24:MI:SS') || ' ' || p_reason || E'\n', 65536)
        WHERE o.id = ANY (p_operation_ids) AND o.status = 'running'
        RETURNING o.id, o.kind, o.instance_id
    ),
    errored AS (
        UPDATE scitq.instance i SET status = 'error'
        FROM abandoned a
        WHERE i.id = a.instance_id AND i.status IN ('requested', 'building', 'deleting')
    )
    SELECT a.id, a.kind, a.instance_id FROM abandoned a ORDER BY a.id;
END;
$$;

-- Link instances to the workers their agents registered (same name): the instance
-- becomes active, the worker non-permanent (unless deployed as permanent) and tied to its
-- recruiter. Returns the instances that became active.
CREATE OR REPLACE FUNCTION scitq.instance_link_workers_v1(p_now timestamptz DEFAULT now())
RETURNS TABLE (instance_id bigint, worker_id bigint, name text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    RETURN QUERY
    WITH linked AS (
        UPDATE scitq.instance i
        SET worker_id = w.id, status = 'active', active_at = p_now
        FROM scitq.worker w
        WHERE w.name = i.name
          AND i.status IN ('requested', 'building')
          -- registered: an agent heartbeats for it
          AND w.status = 'online'
          AND w.last_heartbeat_at IS NOT NULL
        RETURNING i.id, w.id AS worker_id, i.name, i.is_permanent, i.recruiter_id
    ),
    workers AS (
        UPDATE scitq.worker w
        SET is_permanent = l.is_permanent, recruiter_id = l.recruiter_id
        FROM linked l
        WHERE w.id = l.worker_id
    )
    SELECT l.id, l.worker_id, l.name FROM linked l ORDER BY l.id;
END;
$$;

-- Reporting: recruiters with their batch and instances.
CREATE OR REPLACE VIEW scitq.recruiter_overview AS
SELECT r.id AS recruiter_id,
       b.name AS batch,
       r.rank,
       r.provider,
       r.flavor,
       r.image,
       r.region,
       r.concurrency,
       r.prefetch,
       r.min_workers,
       r.max_workers,
       r.tasks_per_worker,
       count(i.id) FILTER (WHERE i.status IN ('requested', 'building')) AS instances_starting,
       count(i.id) FILTER (WHERE i.status = 'active') AS instances_active,
       count(i.id) FILTER (WHERE i.status = 'deleting') AS instances_deleting,
       r.created_at
FROM scitq.recruiter r
JOIN scitq.batch b ON b.id = r.batch_id
LEFT JOIN scitq.instance i ON i.recruiter_id = r.id
GROUP BY r.id, b.name;

-- Reporting: instances with their worker's liveness and their last operation.
CREATE OR REPLACE VIEW scitq.instance_overview AS
SELECT i.id AS instance_id,
       i.name,
       i.provider,
       i.provider_ref,
       i.flavor,
       i.image,
       i.region,
       i.status,
       i.batch,
       i.concurrency,
       i.prefetch,
       i.is_permanent,
       i.recruiter_id,
       i.worker_id,
       CASE
           WHEN w.id IS NULL THEN NULL
           WHEN w.status = 'stopped' THEN 'stopped'
           WHEN w.last_heartbeat_at > now() - make_interval(secs => w.lease_seconds) THEN 'online'
           ELSE 'offline'
       END AS worker_liveness,
       o.id AS last_operation_id,
       o.kind AS last_operation_kind,
       o.status AS last_operation_status,
       o.error AS last_operation_error,
       i.created_at,
       i.active_at,
       i.deleted_at
FROM scitq.instance i
LEFT JOIN scitq.worker w ON w.id = i.worker_id
LEFT JOIN LATERAL (
    SELECT x.id, x.kind, x.status, x.error
    FROM scitq.cloud_operation x
    WHERE x.instance_id = i.id
    ORDER BY x.id DESC
    LIMIT 1
) o ON true;

-- Reporting: cloud operations with their instance's name (the log in full).
CREATE OR REPLACE VIEW scitq.cloud_operation_overview AS
SELECT o.id AS operation_id,
       o.kind,
       o.status,
       o.provider,
       o.instance_id,
       i.name AS instance_name,
       o.worker_id,
       o.progress,
       o.attempts,
       o.error_class,
       o.error,
       o.not_before,
       o.log,
       o.created_at,
       o.updated_at,
       o.finished_at
FROM scitq.cloud_operation o
LEFT JOIN scitq.instance i ON i.id = o.instance_id;
