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

-- The worker row, checked to belong to the calling role (session_user), locked. FOR NO KEY
-- UPDATE, not FOR UPDATE: the agent's calls still take turns on their worker, but a row
-- that references the worker (a signal sent by task_signal_v1, whose foreign key check
-- takes FOR KEY SHARE) is not made to wait for them, which deadlocked a signal racing an
-- agent's report pass.
CREATE OR REPLACE FUNCTION scitq.worker_check_v1(p_worker_id bigint)
RETURNS scitq.worker
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_worker scitq.worker;
BEGIN
    SELECT * INTO v_worker FROM scitq.worker WHERE id = p_worker_id FOR NO KEY UPDATE;
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
