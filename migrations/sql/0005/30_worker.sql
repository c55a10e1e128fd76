-- Workers: registration and heartbeat (agent side), configuration and removal (admin).

-- The batches a worker serves must be names a batch can have (see batch_ensure_v1).
CREATE OR REPLACE FUNCTION scitq.worker_check_batches_v1(p_batches text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM unnest(p_batches) b (name)
        WHERE b.name IS NULL OR b.name = '' OR b.name ~ '[/[:cntrl:]]'
    ) THEN
        RAISE EXCEPTION 'invalid batch name in batches %: each must be non-empty, without "/" or control characters',
            p_batches USING ERRCODE = 'SQ004';
    END IF;
END;
$$;

-- Register a worker, or resume the row of the same name. A new row belongs to the
-- calling role (session_user); an existing one may only be resumed by its role. NULL
-- concurrency, prefetch or batches keep the stored values (defaults for a new row).
-- Executions left live by a previous run of this worker are marked lost at once (no need
-- to wait for their lease) and their tasks requeued without spending a retry, as long as
-- they have free requeues left: the attempt may be what brought the machine down, and the
-- bound on free requeues stops a task that does so from looping for ever.
CREATE OR REPLACE FUNCTION scitq.worker_register_v1(
    p_name text,
    p_hostname text DEFAULT NULL,
    p_batches text[] DEFAULT NULL,
    p_concurrency integer DEFAULT NULL,
    p_prefetch integer DEFAULT NULL,
    p_cpu_count integer DEFAULT NULL,
    p_lease_seconds double precision DEFAULT NULL,
    p_now timestamptz DEFAULT now()
)
RETURNS scitq.worker
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_worker scitq.worker;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    PERFORM scitq.worker_check_role(p_name, p_batches);
    IF p_name IS NULL OR p_name = '' OR p_name ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'invalid worker name %', quote_literal(coalesce(p_name, 'NULL'))
            USING ERRCODE = 'SQ004';
    END IF;
    IF p_concurrency < 0 THEN
        RAISE EXCEPTION 'concurrency must be 0 or more, not %', p_concurrency USING ERRCODE = 'SQ004';
    END IF;
    IF p_prefetch < 0 THEN
        RAISE EXCEPTION 'prefetch must be 0 or more, not %', p_prefetch USING ERRCODE = 'SQ004';
    END IF;
    -- NaN compares greater than any number in PostgreSQL: the upper bound refuses it too
    IF p_lease_seconds <= 0 OR p_lease_seconds > 31536000 THEN
        RAISE EXCEPTION 'lease must be more than 0 and at most 31536000 seconds (a year), not %', p_lease_seconds
            USING ERRCODE = 'SQ004';
    END IF;
    IF p_cpu_count < 1 THEN
        RAISE EXCEPTION 'cpu count must be 1 or more, not %', p_cpu_count USING ERRCODE = 'SQ004';
    END IF;
    PERFORM scitq.worker_check_batches_v1(p_batches);

    INSERT INTO scitq.worker AS w (
        name, hostname, login_role, batches, concurrency, prefetch, cpu_count, lease_seconds,
        status, created_at, last_heartbeat_at
    )
    VALUES (
        p_name, p_hostname, session_user, coalesce(p_batches, '{}'), coalesce(p_concurrency, 1),
        coalesce(p_prefetch, 0), p_cpu_count, coalesce(p_lease_seconds, 60), 'online', p_now, p_now
    )
    ON CONFLICT (name) DO UPDATE
    SET hostname = coalesce(excluded.hostname, w.hostname),
        batches = coalesce(p_batches, w.batches),
        concurrency = coalesce(p_concurrency, w.concurrency),
        prefetch = coalesce(p_prefetch, w.prefetch),
        cpu_count = coalesce(excluded.cpu_count, w.cpu_count),
        lease_seconds = coalesce(p_lease_seconds, w.lease_seconds),
        status = 'online',
        is_draining = false,
        stopped_at = NULL,
        last_heartbeat_at = p_now,
        config_version = w.config_version + 1
    -- only the owning role may resume a worker; otherwise nothing is updated
    WHERE w.login_role = session_user
    RETURNING w.* INTO v_worker;
    IF v_worker.id IS NULL THEN
        RAISE EXCEPTION 'worker % belongs to another database role; role % may not resume it',
            quote_literal(p_name), session_user
            USING ERRCODE = 'SQ002', HINT = 'choose another worker name';
    END IF;

    PERFORM scitq.execution_end_of_worker(
        v_worker.id, 'the worker restarted while it held this execution', p_now,
        p_count_attempt => false
    );
    RETURN v_worker;
END;
$$;

-- Heartbeat: renews the leases of the worker's live executions that the agent holds
-- (p_execution_ids: the others, such as a claim whose answer was lost with the
-- connection at a failover, expire and are rescued as lost), acknowledges the
-- signals the agent has applied (p_acked_signal_ids) and returns the worker's current
-- configuration, the signals still to apply, and which of the executions the agent holds
-- (p_execution_ids) are no longer live: the agent must kill its copies of those.
CREATE OR REPLACE FUNCTION scitq.worker_heartbeat_v1(
    p_worker_id bigint,
    p_execution_ids bigint[] DEFAULT '{}',
    p_acked_signal_ids bigint[] DEFAULT '{}',
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (
    config_version integer,
    batches text[],
    concurrency integer,
    prefetch integer,
    is_paused boolean,
    is_draining boolean,
    lease_seconds double precision,
    signals jsonb,
    dead_execution_ids bigint[]
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_worker scitq.worker := scitq.worker_check_v1(p_worker_id);
    v_renewed bigint[];
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    UPDATE scitq.worker w SET last_heartbeat_at = p_now, status = 'online'
    WHERE w.id = p_worker_id;

    WITH renewed AS (
        UPDATE scitq.execution e
        SET lease_expires_at = p_now + make_interval(secs => v_worker.lease_seconds)
        WHERE e.worker_id = p_worker_id
          AND e.id = ANY (p_execution_ids)
          AND scitq.execution_is_live(e.status)
          -- an expired lease is not renewed: the execution is as good as lost
          AND e.lease_expires_at > p_now
        RETURNING e.id
    )
    SELECT array_agg(renewed.id) INTO v_renewed FROM renewed;

    UPDATE scitq.signal s SET delivered_at = p_now
    WHERE s.worker_id = p_worker_id
      AND s.id = ANY (p_acked_signal_ids)
      AND s.delivered_at IS NULL;

    RETURN QUERY
    SELECT v_worker.config_version, v_worker.batches, v_worker.concurrency, v_worker.prefetch,
           v_worker.is_paused, v_worker.is_draining, v_worker.lease_seconds,
           coalesce((
               SELECT jsonb_agg(jsonb_build_object(
                          'id', s.id, 'execution_id', s.execution_id, 'kind', s.kind)
                      ORDER BY s.id)
               FROM scitq.signal s
               JOIN scitq.execution e ON e.id = s.execution_id
               WHERE s.worker_id = p_worker_id
                 AND s.delivered_at IS NULL
                 AND scitq.execution_is_live(e.status)
           ), '[]'::jsonb),
           ARRAY(
               SELECT x.id FROM unnest(p_execution_ids) AS x (id)
               WHERE x.id <> ALL (coalesce(v_renewed, '{}'))
               ORDER BY x.id
           );
END;
$$;

-- The agent stops: live executions it still holds are handed back (pending again at once,
-- without using a retry: a free requeue, bounded per task) and the worker is marked stopped.
CREATE OR REPLACE FUNCTION scitq.worker_stop_v1(p_worker_id bigint, p_now timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_worker scitq.worker := scitq.worker_check_v1(p_worker_id);
    v_count integer;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    v_count := scitq.execution_end_of_worker(
        v_worker.id, 'handed back by the worker at shutdown', p_now, p_count_attempt => false
    );
    UPDATE scitq.worker w SET status = 'stopped', stopped_at = p_now, is_draining = false
    WHERE w.id = v_worker.id;
    RETURN v_count;
END;
$$;

-- Change a worker's configuration (NULL keeps a value); applied live by the agent at its
-- next heartbeat.
CREATE OR REPLACE FUNCTION scitq.worker_update_v1(
    p_worker_id bigint,
    p_concurrency integer DEFAULT NULL,
    p_prefetch integer DEFAULT NULL,
    p_batches text[] DEFAULT NULL,
    p_is_paused boolean DEFAULT NULL,
    p_is_draining boolean DEFAULT NULL,
    p_is_permanent boolean DEFAULT NULL
)
RETURNS scitq.worker
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_worker scitq.worker;
BEGIN
    IF p_concurrency < 0 THEN
        RAISE EXCEPTION 'concurrency must be 0 or more, not %', p_concurrency USING ERRCODE = 'SQ004';
    END IF;
    IF p_prefetch < 0 THEN
        RAISE EXCEPTION 'prefetch must be 0 or more, not %', p_prefetch USING ERRCODE = 'SQ004';
    END IF;
    PERFORM scitq.worker_check_batches_v1(p_batches);
    UPDATE scitq.worker w
    SET concurrency = coalesce(p_concurrency, w.concurrency),
        prefetch = coalesce(p_prefetch, w.prefetch),
        batches = coalesce(p_batches, w.batches),
        is_paused = coalesce(p_is_paused, w.is_paused),
        is_draining = coalesce(p_is_draining, w.is_draining),
        is_permanent = coalesce(p_is_permanent, w.is_permanent),
        config_version = w.config_version + 1
    WHERE w.id = p_worker_id
    RETURNING w.* INTO v_worker;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % does not exist', p_worker_id USING ERRCODE = 'SQ003';
    END IF;
    IF p_is_paused = false THEN
        PERFORM pg_notify('scitq_task_pending_v1', '');
    END IF;
    RETURN v_worker;
END;
$$;

-- Delete a worker row. Its live executions are marked lost and their tasks requeued
-- (free requeues); the
-- history of its executions is kept (worker_name stays, worker_id becomes NULL).
CREATE OR REPLACE FUNCTION scitq.worker_delete_v1(p_worker_id bigint, p_now timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    PERFORM 1 FROM scitq.worker WHERE id = p_worker_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % does not exist', p_worker_id USING ERRCODE = 'SQ003';
    END IF;
    PERFORM scitq.execution_end_of_worker(
        p_worker_id, 'the worker was deleted', p_now, p_count_attempt => false
    );
    DELETE FROM scitq.worker WHERE id = p_worker_id;
END;
$$;

-- What a login role may register (scitq.agent_role): a role created for one worker
-- (worker_create_role_v2) registers that worker only, serving only the batches it was
-- allowed (NULL: any; an empty list asks for every batch, and gets the allowed ones at
-- claim time); and no other role may take a worker name reserved for such a role. Other
-- roles (the shared scitq_agent members of a single-user machine, the admin) register
-- any free name. SQ002 otherwise.
CREATE OR REPLACE FUNCTION scitq.worker_check_role(p_name text, p_batches text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_bound scitq.agent_role;
    v_outside text[];
BEGIN
    SELECT * INTO v_bound FROM scitq.agent_role r WHERE r.role_name = session_user;
    IF NOT FOUND THEN
        SELECT * INTO v_bound FROM scitq.agent_role r WHERE r.worker_name = p_name;
        IF FOUND THEN
            RAISE EXCEPTION 'worker name % is reserved for database role %; role % may not register it',
                quote_literal(p_name), v_bound.role_name, session_user
                USING ERRCODE = 'SQ002', HINT = 'choose another worker name';
        END IF;
        RETURN;
    END IF;
    IF p_name IS DISTINCT FROM v_bound.worker_name THEN
        RAISE EXCEPTION 'role % was created for worker % and may not register worker %',
            session_user, quote_literal(v_bound.worker_name), quote_literal(coalesce(p_name, 'NULL'))
            USING ERRCODE = 'SQ002',
                  HINT = format('start the agent with --name %s', v_bound.worker_name);
    END IF;
    v_outside := ARRAY(
        SELECT x.name FROM unnest(p_batches) AS x (name)
        WHERE v_bound.batches IS NOT NULL AND NOT x.name = ANY (v_bound.batches)
    );
    IF cardinality(v_outside) > 0 THEN
        RAISE EXCEPTION 'role % may not serve batch %: it may serve only %', session_user,
            array_to_string(v_outside, ', '), array_to_string(v_bound.batches, ', ')
            USING ERRCODE = 'SQ002',
                  HINT = 'an admin changes this with `scitq db role-batches`';
    END IF;
END;
$$;

-- Create a login role for one worker (member of scitq_agent) and the worker row it owns,
-- bound to it (scitq.agent_role): the role registers that worker only, and serves only
-- p_batches (NULL: any batch; worker_role_set_batches_v1 changes it later).
-- p_password_hash is a SCRAM verifier computed by the client (libpq's
-- PQencryptPasswordConn), so the clear password never reaches the server.
CREATE OR REPLACE FUNCTION scitq.worker_create_role_v2(
    p_worker_name text,
    p_role text,
    p_password_hash text,
    p_batches text[] DEFAULT NULL
)
RETURNS scitq.worker
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_worker scitq.worker;
BEGIN
    IF p_role IS NULL OR p_role !~ '^[a-z_][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid role name %: use lower-case letters, digits, "_", "." or "-", at most 63 characters',
            quote_literal(coalesce(p_role, 'NULL'))
            USING ERRCODE = 'SQ004';
    END IF;
    IF p_password_hash IS NULL OR p_password_hash NOT LIKE 'SCRAM-SHA-256$%' THEN
        RAISE EXCEPTION 'the password must be given as a SCRAM-SHA-256 verifier' USING ERRCODE = 'SQ004';
    END IF;
    PERFORM scitq.worker_check_batches_v1(p_batches);
    IF EXISTS (SELECT 1 FROM scitq.worker WHERE name = p_worker_name)
       OR EXISTS (SELECT 1 FROM scitq.agent_role WHERE worker_name = p_worker_name) THEN
        RAISE EXCEPTION 'worker % exists already', quote_literal(p_worker_name) USING ERRCODE = 'SQ004';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) THEN
        RAISE EXCEPTION 'role % exists already', quote_literal(p_role) USING ERRCODE = 'SQ004';
    END IF;
    -- identifiers and literals quoted by format(%I, %L); no value is spliced in raw
    EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE scitq_agent', p_role, p_password_hash);
    INSERT INTO scitq.agent_role (role_name, worker_name, batches) VALUES (p_role, p_worker_name, p_batches);
    INSERT INTO scitq.worker (name, login_role, batches, status, stopped_at)
    VALUES (p_worker_name, p_role, coalesce(p_batches, '{}'), 'stopped', now())
    RETURNING * INTO v_worker;
    RETURN v_worker;
END;
$$;

-- The previous version, for clients of the previous release: any batch.
CREATE OR REPLACE FUNCTION scitq.worker_create_role_v1(
    p_worker_name text,
    p_role text,
    p_password_hash text
)
RETURNS scitq.worker
LANGUAGE sql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
    SELECT * FROM scitq.worker_create_role_v2(p_worker_name, p_role, p_password_hash);
$$;

-- Fix the batches a role created for one worker may ever serve (NULL: any). Claims
-- outside them are refused from the next claim on; live executions go on. Returns the
-- role's row.
CREATE OR REPLACE FUNCTION scitq.worker_role_set_batches_v1(p_role text, p_batches text[])
RETURNS scitq.agent_role
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_role scitq.agent_role;
BEGIN
    PERFORM scitq.worker_check_batches_v1(p_batches);
    UPDATE scitq.agent_role r SET batches = p_batches
    WHERE r.role_name = p_role
    RETURNING * INTO v_role;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role % was not created for a worker (scitq db create-role --agent)',
            quote_literal(coalesce(p_role, 'NULL'))
            USING ERRCODE = 'SQ003';
    END IF;
    RETURN v_role;
END;
$$;
