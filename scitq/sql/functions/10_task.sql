-- Tasks: submission, claim, what happens to a task when its execution ends or its
-- dependencies do, user actions (pause, resume, cancel, retry, delete, signal) and the
-- event log of status transitions. Statuses change through scitq.task_set_status only
-- (05_states.sql).

-- The checks of task_submit_v1 on its JSON array of tasks (and of task_update_v1 on its
-- changes): the first problem raises SQ004, naming the task by its position (1-based),
-- or as p_label when given.
CREATE OR REPLACE FUNCTION scitq.task_check_submission(p_tasks jsonb, p_label text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_bad record;
BEGIN
    -- Validation, first problem reported with the task's position (1-based).
    SELECT e.pos, e.t INTO v_bad
    FROM jsonb_array_elements(p_tasks) WITH ORDINALITY AS e (t, pos)
    WHERE jsonb_typeof(e.t) <> 'object'
       OR jsonb_typeof(e.t -> 'command') IS DISTINCT FROM 'string'
       OR btrim(e.t ->> 'command') = ''
    ORDER BY e.pos
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '% has no command: a non-empty "command" string is required', coalesce(p_label, 'task #' || v_bad.pos)
            USING ERRCODE = 'SQ004';
    END IF;
    SELECT e.pos, k.key INTO v_bad
    FROM jsonb_array_elements(p_tasks) WITH ORDINALITY AS e (t, pos)
    CROSS JOIN LATERAL jsonb_object_keys(e.t) AS k (key)
    WHERE k.key NOT IN (
        'command', 'name', 'shell', 'container', 'container_options', 'inputs', 'resources',
        'output', 'retries', 'requeues', 'retry_delay_seconds', 'download_timeout_seconds',
        'run_timeout_seconds', 'priority', 'env', 'tags', 'depends_on', 'depends_on_names',
        'use_cache'
    )
    ORDER BY e.pos
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '% has an unknown field %', coalesce(p_label, 'task #' || v_bad.pos), quote_literal(v_bad.key)
            USING ERRCODE = 'SQ004';
    END IF;
    SELECT e.pos INTO v_bad
    FROM jsonb_array_elements(p_tasks) WITH ORDINALITY AS e (t, pos)
    WHERE (e.t ? 'env' AND (
              jsonb_typeof(e.t -> 'env') <> 'object'
              OR EXISTS (SELECT 1 FROM jsonb_each(e.t -> 'env') v WHERE jsonb_typeof(v.value) <> 'string')
              -- names a process can receive: no '=', not empty, no NUL or control character
              OR EXISTS (SELECT 1 FROM jsonb_object_keys(CASE jsonb_typeof(e.t -> 'env') WHEN 'object' THEN e.t -> 'env' ELSE '{}' END) k (name)
                         WHERE k.name !~ '^[A-Za-z_][A-Za-z0-9_]*$')))
       OR EXISTS (
           SELECT 1 FROM unnest(ARRAY['inputs', 'resources', 'tags', 'depends_on', 'depends_on_names']) f
           WHERE e.t ? f AND jsonb_typeof(e.t -> f) <> 'array')
    ORDER BY e.pos
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '%: env must be an object of strings named like shell variables (letters, digits, _); inputs, resources, tags, depends_on and depends_on_names must be arrays', coalesce(p_label, 'task #' || v_bad.pos)
            USING ERRCODE = 'SQ004';
    END IF;

    SELECT e.pos, f.field, f.expected INTO v_bad
    FROM jsonb_array_elements(p_tasks) WITH ORDINALITY AS e (t, pos)
    CROSS JOIN LATERAL (
        VALUES ('name', 'string'), ('container', 'string'), ('container_options', 'string'),
               ('output', 'string'), ('shell', 'boolean'), ('use_cache', 'boolean'), ('retries', 'number'),
               ('requeues', 'number'),
               ('priority', 'number'), ('retry_delay_seconds', 'number'),
               ('download_timeout_seconds', 'number'), ('run_timeout_seconds', 'number')
    ) AS f (field, expected)
    WHERE e.t ? f.field
      AND jsonb_typeof(e.t -> f.field) NOT IN (f.expected, 'null')
    ORDER BY e.pos
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '%: % must be a %', coalesce(p_label, 'task #' || v_bad.pos), v_bad.field, v_bad.expected
            USING ERRCODE = 'SQ004';
    END IF;
    SELECT e.pos, r.retries, r.retry_delay_seconds, r.download_timeout_seconds, r.run_timeout_seconds,
           r.priority
    INTO v_bad
    FROM jsonb_array_elements(p_tasks) WITH ORDINALITY AS e (t, pos)
    CROSS JOIN LATERAL jsonb_to_record(e.t) AS r (
        retries numeric, requeues numeric, retry_delay_seconds numeric,
        download_timeout_seconds numeric, run_timeout_seconds numeric, priority numeric
    )
    WHERE r.retries < 0 OR r.retries <> trunc(r.retries) OR r.retries > 1000000
       OR r.requeues < 0 OR r.requeues <> trunc(r.requeues) OR r.requeues > 1000000
       OR r.priority <> trunc(r.priority) OR abs(r.priority) > 2147483647
       OR r.retry_delay_seconds < 0
       OR r.download_timeout_seconds <= 0 OR r.run_timeout_seconds <= 0
    ORDER BY e.pos
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '%: retries must be a whole number from 0 (requeues too), priority a whole number, retry_delay_seconds 0 or more and timeouts more than 0 seconds', coalesce(p_label, 'task #' || v_bad.pos)
            USING ERRCODE = 'SQ004';
    END IF;
    SELECT e.pos INTO v_bad
    FROM jsonb_array_elements(p_tasks) WITH ORDINALITY AS e (t, pos)
    CROSS JOIN LATERAL jsonb_array_elements(coalesce(e.t -> 'depends_on', '[]')) AS d (v)
    WHERE jsonb_typeof(d.v) <> 'number' OR (d.v #>> '{}')::numeric <> trunc((d.v #>> '{}')::numeric)
    ORDER BY e.pos
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '%: depends_on must list task ids (whole numbers)', coalesce(p_label, 'task #' || v_bad.pos)
            USING ERRCODE = 'SQ004';
    END IF;
END;
$$;

-- Submit many tasks to one batch in one call. p_tasks is a JSON array of objects:
--   command (required), name, shell, container, container_options, inputs, resources,
--   output, retries, requeues, retry_delay_seconds, download_timeout_seconds,
--   run_timeout_seconds, priority, env (object of strings), tags, depends_on (task ids),
--   depends_on_names (names of tasks of the same batch, including this call's; a name
--   matching several tasks means all of them), use_cache (scitq v1's: see task_claim_v2).
-- The batch is created if missing. Returns the new tasks in the order given.
CREATE OR REPLACE FUNCTION scitq.task_submit_v1(
    p_batch text,
    p_tasks jsonb,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (id bigint, name text, status scitq.task_status)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_batch_id bigint;
    v_count integer;
    v_ids bigint[];
    v_edge_task bigint[];
    v_edge_dep bigint[];
    v_bad record;
    v_canceled bigint[];
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    IF jsonb_typeof(p_tasks) IS DISTINCT FROM 'array' OR jsonb_array_length(p_tasks) = 0 THEN
        RAISE EXCEPTION 'tasks must be a non-empty JSON array of objects' USING ERRCODE = 'SQ004';
    END IF;
    v_count := jsonb_array_length(p_tasks);

    PERFORM scitq.task_check_submission(p_tasks);

    v_batch_id := scitq.batch_ensure_v1(p_batch);
    v_ids := ARRAY(SELECT nextval('scitq.task_id_seq') FROM generate_series(1, v_count));

    -- Dependency edges (new task id, task it depends on), resolved before any insert.
    WITH element AS (
        SELECT v_ids[e.pos] AS id, e.pos, e.t
        FROM jsonb_array_elements(p_tasks) WITH ORDINALITY AS e (t, pos)
        WHERE e.t ? 'depends_on' OR e.t ? 'depends_on_names'
    ),
    by_id AS (
        SELECT el.id, el.pos, d.value::bigint AS dep, NULL::text AS dep_name
        FROM element el
        CROSS JOIN LATERAL jsonb_array_elements_text(el.t -> 'depends_on') AS d (value)
    ),
    new_name AS (
        SELECT v_ids[e.pos] AS id, e.t ->> 'name' AS name
        FROM jsonb_array_elements(p_tasks) WITH ORDINALITY AS e (t, pos)
        WHERE e.t ->> 'name' IS NOT NULL
    ),
    by_name AS (
        SELECT el.id, el.pos, m.id AS dep, n.value AS dep_name
        FROM element el
        CROSS JOIN LATERAL jsonb_array_elements_text(el.t -> 'depends_on_names') AS n (value)
        LEFT JOIN LATERAL (
            SELECT x.id FROM scitq.task x WHERE x.batch_id = v_batch_id AND x.name = n.value
            UNION ALL
            SELECT nn.id FROM new_name nn WHERE nn.name = n.value
        ) m ON true
    ),
    edge AS (
        SELECT * FROM by_id
        UNION ALL
        SELECT * FROM by_name
    )
    SELECT array_agg(edge.id), array_agg(edge.dep) INTO v_edge_task, v_edge_dep
    FROM edge;

    IF v_edge_task IS NOT NULL THEN
        -- Unknown names and ids.
        SELECT x.pos, x.dep_name, x.dep INTO v_bad
        FROM (
            SELECT array_position(v_ids, e.task) AS pos, NULL::text AS dep_name, e.dep
            FROM unnest(v_edge_task, v_edge_dep) AS e (task, dep)
            WHERE e.dep IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM scitq.task x WHERE x.id = e.dep)
              AND NOT e.dep IN (SELECT unnest(v_ids))
            UNION ALL
            SELECT array_position(v_ids, e.task), '', NULL
            FROM unnest(v_edge_task, v_edge_dep) AS e (task, dep)
            WHERE e.dep IS NULL
        ) x
        LIMIT 1;
        IF FOUND THEN
            IF v_bad.dep IS NOT NULL THEN
                RAISE EXCEPTION 'task #% depends on task %, which does not exist', v_bad.pos, v_bad.dep
                    USING ERRCODE = 'SQ003';
            END IF;
            RAISE EXCEPTION 'task #% depends on a name that no task of batch % has', v_bad.pos, quote_literal(p_batch)
                USING ERRCODE = 'SQ003',
                      HINT = 'depends_on_names refers to the "name" of tasks of the same batch';
        END IF;

        -- Cycles can only run through this call's tasks.
        WITH RECURSIVE new_edge AS (
            SELECT DISTINCT e.task, e.dep
            FROM unnest(v_edge_task, v_edge_dep) AS e (task, dep)
            WHERE e.dep IN (SELECT unnest(v_ids))
        ),
        walk (start, node) AS (
            SELECT task, dep FROM new_edge
            UNION
            SELECT walk.start, ne.dep FROM walk JOIN new_edge ne ON ne.task = walk.node
        )
        SELECT array_position(v_ids, walk.start) AS pos INTO v_bad
        FROM walk
        WHERE walk.start = walk.node
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'task #% depends on itself through its dependencies', v_bad.pos
                USING ERRCODE = 'SQ005';
        END IF;
    END IF;

    WITH dep AS (
        -- state of each new task's dependencies (new ones count as unmet)
        SELECT e.task,
               count(*) FILTER (WHERE u.status IS DISTINCT FROM 'succeeded') AS unmet,
               min(coalesce(u.canceled_by_task_id, u.id)) FILTER (WHERE u.status IN ('failed', 'canceled')) AS blocker,
               min(CASE WHEN u.status = 'failed' THEN 'failed' ELSE 'was canceled' END)
                   FILTER (WHERE u.status IN ('failed', 'canceled')) AS blocker_what
        FROM unnest(v_edge_task, v_edge_dep) AS e (task, dep)
        LEFT JOIN scitq.task u ON u.id = e.dep
        GROUP BY e.task
    )
    INSERT INTO scitq.task (
        id, batch_id, name, command, shell, container, container_options, inputs, resources,
        output, retries, requeues, retry_delay_seconds, download_timeout_seconds,
        run_timeout_seconds, priority, env, tags, status, status_changed_at, available_at,
        created_at, cancel_reason, canceled_by_task_id, use_cache
    )
    SELECT v_ids[r.ordinality], v_batch_id, r.name, r.command, coalesce(r.shell, false), r.container,
           r.container_options, coalesce(r.inputs, '{}'), coalesce(r.resources, '{}'),
           r.output, coalesce(r.retries, 0),
           -- the task's own, else the batch's (batch_set_requeues_v1), else 3
           coalesce(r.requeues, (SELECT x.requeues FROM scitq.batch x WHERE x.id = v_batch_id), 3),
           coalesce(r.retry_delay_seconds, 10),
           r.download_timeout_seconds, r.run_timeout_seconds, coalesce(r.priority, 0),
           coalesce(r.env, '{}'), coalesce(r.tags, '{}'),
           CASE
               WHEN dep.blocker IS NOT NULL THEN 'canceled'
               WHEN dep.unmet > 0 THEN 'waiting'
               ELSE 'pending'
           END::scitq.task_status,
           p_now, p_now, p_now,
           CASE WHEN dep.blocker IS NOT NULL
                THEN format('dependency task %s %s', dep.blocker, dep.blocker_what) END,
           dep.blocker, coalesce(r.use_cache, false)
    FROM ROWS FROM (
        jsonb_to_recordset(p_tasks) AS (
            name text, command text, shell boolean, container text, container_options text,
            inputs text[], resources text[], output text, retries integer, requeues integer,
            retry_delay_seconds double precision, download_timeout_seconds double precision,
            run_timeout_seconds double precision, priority integer, env jsonb, tags text[],
            use_cache boolean
        )
    ) WITH ORDINALITY AS r
    LEFT JOIN dep ON dep.task = v_ids[r.ordinality];

    IF v_edge_task IS NOT NULL THEN
        INSERT INTO scitq.task_dependency (task_id, depends_on_id)
        SELECT DISTINCT e.task, e.dep FROM unnest(v_edge_task, v_edge_dep) AS e (task, dep);

        -- A task canceled at birth cancels this call's tasks that depend on it.
        SELECT array_agg(t.id) INTO v_canceled
        FROM scitq.task t
        WHERE t.id IN (SELECT unnest(v_ids)) AND t.status = 'canceled';
        IF v_canceled IS NOT NULL THEN
            PERFORM scitq.task_cancel_dependents_v1(v_canceled, NULL, p_now);
        END IF;
    END IF;

    PERFORM pg_notify('scitq_task_pending_v1', p_batch);
    RETURN QUERY
    SELECT t.id, t.name, t.status
    FROM unnest(v_ids) WITH ORDINALITY AS n (id, pos)
    JOIN scitq.task t ON t.id = n.id
    ORDER BY n.pos;
END;
$$;

-- Submit one task: the psql-friendly form of task_submit_v1.
CREATE OR REPLACE FUNCTION scitq.task_add_v1(
    p_batch text,
    p_command text,
    p_name text DEFAULT NULL,
    p_shell boolean DEFAULT false,
    p_container text DEFAULT NULL,
    p_container_options text DEFAULT NULL,
    p_inputs text[] DEFAULT '{}',
    p_resources text[] DEFAULT '{}',
    p_output text DEFAULT NULL,
    p_retries integer DEFAULT 0,
    p_download_timeout_seconds double precision DEFAULT NULL,
    p_run_timeout_seconds double precision DEFAULT NULL,
    p_priority integer DEFAULT 0,
    p_env jsonb DEFAULT '{}',
    p_tags text[] DEFAULT '{}',
    p_depends_on bigint[] DEFAULT '{}',
    p_now timestamptz DEFAULT now()
)
RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
    SELECT s.id
    FROM scitq.task_submit_v1(
        p_batch,
        jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'command', p_command, 'name', p_name, 'shell', p_shell, 'container', p_container,
            'container_options', p_container_options, 'inputs', to_jsonb(p_inputs),
            'resources', to_jsonb(p_resources), 'output', p_output, 'retries', p_retries,
            'download_timeout_seconds', p_download_timeout_seconds,
            'run_timeout_seconds', p_run_timeout_seconds, 'priority', p_priority,
            'env', p_env, 'tags', to_jsonb(p_tags), 'depends_on', to_jsonb(p_depends_on)
        ))),
        p_now
    ) s;
$$;

-- Whether the tasks the worker would claim are short: in each of the batches that have a
-- pending task, it has at least as many successes as slots, their commands ran 0.5 s on
-- average and none 2 s or more (the agent's wall_seconds, summed in scitq.batch_duration
-- by execution_finish_v1; not the time from claim to end, which read-ahead lengthens). A
-- batch it has not run yet is not known to be short.
CREATE OR REPLACE FUNCTION scitq.task_short_on_worker(p_worker scitq.worker, p_batch_ids bigint[])
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = scitq, pg_temp
AS $$
BEGIN
    RETURN NOT EXISTS (
        SELECT 1
        FROM unnest(p_batch_ids) AS b (id)
        LEFT JOIN scitq.batch_duration d ON d.batch_id = b.id AND d.worker_name = p_worker.name
        WHERE EXISTS (SELECT 1 FROM scitq.task t WHERE t.batch_id = b.id AND t.status = 'pending')
          AND (d.batch_id IS NULL
               OR d.succeeded < greatest(p_worker.concurrency, 1)
               OR d.run_total_seconds >= 0.5 * d.succeeded
               OR d.run_max_seconds >= 2.0)
    );
END;
$$;

-- Claim up to p_limit runnable tasks for a worker, never more than its free slots
-- (concurrency + prefetch - live executions). One statement takes the rows with
-- FOR UPDATE SKIP LOCKED in priority then age order, backed by task_claim_idx; the tasks
-- become assigned, and an execution with a lease is created for each.
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
-- The agent's hot path (this claim, execution_set_phase_v2, execution_finish_v1, and the
-- functions and triggers they call, which inherit these settings) touches a few rows by
-- key. Its statements are planned once per session (planning each call cost more than
-- running it: half of a report pass), and those plans must hold as the tables grow from
-- empty: only index scans joined by nested loops, never a scan or hash of a whole table
-- that was small when the plan was made (tests/integration/test_pass_plans.py).
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    v_worker scitq.worker := scitq.worker_check_v1(p_worker_id);
    v_held bigint;
    v_limit bigint;
    v_batch_ids bigint[];
    v_task_ids bigint[];
    v_allowed text[];
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
    SELECT count(*) INTO v_held
    FROM scitq.execution e
    WHERE e.worker_id = p_worker_id
      AND scitq.execution_is_live(e.status);
    v_limit := least(p_limit, v_worker.concurrency::bigint + v_worker.prefetch - v_held);
    IF least(p_limit, 8 * v_worker.concurrency::bigint + v_worker.prefetch - v_held) <= 0 THEN
        RETURN;  -- full, read-ahead (below) included
    END IF;

    -- a role created for one worker serves only the batches the admin allowed it (NULL:
    -- any), whatever the worker row says (scitq.agent_role)
    SELECT r.batches INTO v_allowed FROM scitq.agent_role r WHERE r.role_name = v_worker.login_role;

    SELECT array_agg(b.id) INTO v_batch_ids
    FROM scitq.batch b
    WHERE NOT b.is_paused
      -- an empty list of batches means every batch
      AND (cardinality(v_worker.batches) = 0 OR b.name = ANY (v_worker.batches))
      AND (v_allowed IS NULL OR b.name = ANY (v_allowed));
    IF v_batch_ids IS NULL THEN
        RETURN;
    END IF;

    -- Read-ahead for short tasks: asked for more, a worker whose tasks are short in every
    -- batch it would claim from (scitq.task_short_on_worker) holds up to 8 x concurrency
    -- (+ prefetch), so that its slots refill from what it holds instead of waiting for a
    -- claim. This counts the executions the agent has ended and not yet reported (under
    -- load a pass's worth: as many as run meanwhile); the agent itself queues 3 x
    -- concurrency more than its slots (scitq.agent.reports.READ_AHEAD). Long tasks are
    -- never held ahead beyond prefetch: another worker may be free for them.
    IF p_limit > v_limit AND scitq.task_short_on_worker(v_worker, v_batch_ids) THEN
        v_limit := least(p_limit, 8 * v_worker.concurrency::bigint + v_worker.prefetch - v_held);
    END IF;
    IF v_limit <= 0 THEN
        RETURN;
    END IF;

    v_task_ids := ARRAY(
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
    );
    IF cardinality(v_task_ids) = 0 THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH claimed AS (
        SELECT t.*
        FROM scitq.task_set_status(v_task_ids, '{assigned}', p_now, p_from => '{pending}') t
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

    SELECT count(*) INTO v_count
    FROM scitq.task_set_status(
        ARRAY(
            SELECT t.id
            FROM scitq.task t
            WHERE t.id = ANY (v_dependents)
              AND NOT scitq.task_has_unmet_dependency(t.id)
        ),
        '{pending}',
        p_now,
        p_from => '{waiting}'
    );
    IF v_count > 0 THEN
        PERFORM pg_notify('scitq_task_pending_v1', '');
    END IF;
    RETURN v_count;
END;
$$;

-- Whether a dependency of the task has not succeeded (yet, or for good).
CREATE OR REPLACE FUNCTION scitq.task_has_unmet_dependency(p_task_id bigint)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT EXISTS (
        SELECT 1
        FROM scitq.task_dependency d
        JOIN scitq.task u ON u.id = d.depends_on_id
        WHERE d.task_id = p_task_id
          AND u.status <> 'succeeded'
    );
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
    v_ids bigint[];
    v_reasons text[];
    v_causes bigint[];
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
    SELECT array_agg(target.id),
           array_agg(format('dependency task %s %s', target.cause, target.what)),
           array_agg(target.cause)
    INTO v_ids, v_reasons, v_causes
    FROM target;

    SELECT count(*) INTO v_count
    FROM scitq.task_set_status(
        v_ids,
        '{canceled}',
        p_now,
        -- only tasks that have not started; a running dependent is left to finish
        p_from => '{waiting, pending, paused}',
        p_cancel_reasons => v_reasons,
        p_canceled_by_task_ids => v_causes
    );
    RETURN v_count;
END;
$$;

-- Tasks whose live execution just ended without success: back to pending after a
-- back-off while retries are left, else failed (and their dependents canceled).
-- p_count_attempt false makes it a free requeue (the execution was lost or handed back:
-- infrastructure, not the task's own failure): pending at once without spending a retry,
-- while the task has free requeues left (requeue_count < requeues). Past them a loss
-- counts as an attempt (a retry after the back-off, or failed), so that a task that
-- brings its machine down cannot loop for ever.
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
    v_ids bigint[];
    v_to scitq.task_status[];
    v_available_at timestamptz[];
    v_failed bigint[];
    v_count integer;
    v_free bigint[];
    v_spent bigint[];
BEGIN
    IF NOT p_count_attempt THEN
        SELECT array_agg(t.id) FILTER (WHERE t.requeue_count < t.requeues),
               array_agg(t.id) FILTER (WHERE t.requeue_count >= t.requeues)
        INTO v_free, v_spent
        FROM scitq.task t
        WHERE t.id = ANY (p_task_ids)
          AND scitq.task_is_held(t.status);
        SELECT count(*) INTO v_count
        FROM scitq.task_set_status(
            v_free, '{pending}', p_now, p_from => scitq.task_held_statuses(), p_give_back => true
        );
        IF v_count > 0 THEN
            PERFORM pg_notify('scitq_task_pending_v1', '');
        END IF;
        -- no free requeue left: the loss counts as an attempt
        RETURN v_count + scitq.task_settle_failure_v1(v_spent, p_now);
    END IF;

    SELECT array_agg(t.id),
           array_agg(CASE
               WHEN t.attempt_count - t.retry_floor <= t.retries THEN 'pending'::scitq.task_status
               ELSE 'failed'::scitq.task_status
           END),
           -- exponential back-off from retry_delay_seconds, capped at one hour
           array_agg(p_now + make_interval(secs => least(
               3600.0,
               t.retry_delay_seconds * power(2, greatest(t.attempt_count - t.retry_floor - 1, 0))
           )))
    INTO v_ids, v_to, v_available_at
    FROM scitq.task t
    WHERE t.id = ANY (p_task_ids)
      -- a task canceled or deleted meanwhile keeps its state
      AND scitq.task_is_held(t.status);

    SELECT array_agg(s.id) FILTER (WHERE s.status = 'failed'), count(*)
    INTO v_failed, v_count
    FROM scitq.task_set_status(
        v_ids,
        v_to,
        p_now,
        -- held still when it moves: a concurrent cancel wins
        p_from => scitq.task_held_statuses(),
        p_available_at => v_available_at
    ) s;

    IF v_failed IS NOT NULL THEN
        PERFORM scitq.task_cancel_dependents_v1(v_failed, 'failed', p_now);
    END IF;
    IF v_count > coalesce(cardinality(v_failed), 0) THEN
        PERFORM pg_notify('scitq_task_pending_v1', '');
    END IF;
    RETURN v_count;
END;
$$;

-- Signal the live executions of tasks (pause, resume, term, kill). Returns how many.
CREATE OR REPLACE FUNCTION scitq.task_signal_v1(
    p_task_ids bigint[],
    p_kind scitq.signal_kind,
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
    INSERT INTO scitq.signal (execution_id, worker_id, kind, created_at)
    SELECT e.id, e.worker_id, p_kind, p_now
    FROM scitq.execution e
    WHERE e.task_id = ANY (p_task_ids)
      AND scitq.execution_is_live(e.status)
      AND e.worker_id IS NOT NULL;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- Pause tasks: waiting or pending ones are held (paused); running ones get a pause
-- signal (SIGSTOP) and keep their status. Returns the tasks that became paused.
CREATE OR REPLACE FUNCTION scitq.task_pause_v1(p_task_ids bigint[], p_now timestamptz DEFAULT now())
RETURNS TABLE (id bigint, status scitq.task_status)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    PERFORM scitq.task_signal_v1(p_task_ids, 'pause', p_now);
    RETURN QUERY
    SELECT t.id, t.status
    FROM scitq.task_set_status(p_task_ids, '{paused}', p_now, p_from => '{waiting, pending}') t;
END;
$$;

-- Resume paused tasks (to pending, or waiting while a dependency has not succeeded) and
-- send a resume signal (SIGCONT) to running ones.
CREATE OR REPLACE FUNCTION scitq.task_resume_v1(p_task_ids bigint[], p_now timestamptz DEFAULT now())
RETURNS TABLE (id bigint, status scitq.task_status)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    PERFORM scitq.task_signal_v1(p_task_ids, 'resume', p_now);
    PERFORM pg_notify('scitq_task_pending_v1', '');
    RETURN QUERY
    SELECT t.id, t.status
    FROM scitq.task_requeue(p_task_ids, '{paused}', p_now) t;
END;
$$;

-- Tasks of p_task_ids in one of p_from become pending, or waiting while a dependency has
-- not succeeded: what a resume and a retry do. Returns the tasks moved.
CREATE OR REPLACE FUNCTION scitq.task_requeue(
    p_task_ids bigint[],
    p_from scitq.task_status[],
    p_now timestamptz
)
RETURNS SETOF scitq.task
LANGUAGE sql
SET search_path = scitq, pg_temp
AS $$
    SELECT s.*
    FROM (
        SELECT array_agg(t.id) AS ids,
               array_agg(CASE
                   WHEN scitq.task_has_unmet_dependency(t.id) THEN 'waiting'::scitq.task_status
                   ELSE 'pending'::scitq.task_status
               END) AS statuses
        FROM scitq.task t
        WHERE t.id = ANY (p_task_ids)
          AND t.status = ANY (p_from)
    ) m
    CROSS JOIN LATERAL scitq.task_set_status(m.ids, m.statuses, p_now, p_from => p_from) s;
$$;

-- Cancel tasks that have not ended: their live execution is marked canceled (the agent
-- learns it at its next heartbeat and kills its copy) and their dependents are canceled.
CREATE OR REPLACE FUNCTION scitq.task_cancel_v1(
    p_task_ids bigint[],
    p_reason text DEFAULT 'canceled by user',
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (id bigint, status scitq.task_status)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_canceled bigint[];
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    -- the live executions first, then the tasks: the order an agent's finish locks them
    -- in (execution_finish_v1), so that a cancel racing a finish waits instead of deadlocking
    PERFORM 1
    FROM scitq.execution e
    WHERE e.task_id = ANY (p_task_ids)
      AND scitq.execution_is_live(e.status)
    ORDER BY e.id
    FOR UPDATE;
    SELECT array_agg(t.id) INTO v_canceled
    FROM scitq.task_set_status(
        p_task_ids,
        '{canceled}',
        p_now,
        p_from => scitq.task_live_statuses(),
        p_cancel_reasons => ARRAY[p_reason]
    ) t;
    IF v_canceled IS NULL THEN
        RETURN;
    END IF;

    PERFORM scitq.execution_set_status(
        ARRAY(
            SELECT e.id
            FROM scitq.execution e
            WHERE e.task_id = ANY (v_canceled)
              AND scitq.execution_is_live(e.status)
        ),
        '{canceled}',
        p_now,
        p_from => scitq.execution_phases(),
        p_failure_reasons => ARRAY[p_reason]
    );

    PERFORM scitq.task_cancel_dependents_v1(v_canceled, 'was canceled', p_now);
    RETURN QUERY SELECT t.id, t.status FROM scitq.task t WHERE t.id = ANY (v_canceled);
END;
$$;

-- Retry failed or canceled tasks: a fresh retry budget, back to pending (or waiting for
-- unmet dependencies); the tasks that were canceled because of them are restored too.
-- Retrying a task canceled because a dependency failed retries that root cause as well
-- (with everything it had canceled): otherwise the task would wait forever.
CREATE OR REPLACE FUNCTION scitq.task_retry_v1(p_task_ids bigint[], p_now timestamptz DEFAULT now())
RETURNS TABLE (id bigint, status scitq.task_status)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_retried bigint[];
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    WITH asked AS (
        SELECT t.id
        FROM scitq.task t
        WHERE t.id = ANY (p_task_ids)
          AND t.status IN ('failed', 'canceled')
        UNION
        -- the root cause of a task canceled because of a dependency
        SELECT root.id
        FROM scitq.task t
        JOIN scitq.task root ON root.id = t.canceled_by_task_id
        WHERE t.id = ANY (p_task_ids)
          AND t.status = 'canceled'
          AND root.status IN ('failed', 'canceled')
    )
    SELECT array_agg(x.id ORDER BY x.id) INTO v_retried
    FROM (
        SELECT asked.id FROM asked
        UNION
        -- dependents canceled because of one of these tasks
        SELECT t.id
        FROM scitq.task t
        WHERE t.canceled_by_task_id IN (SELECT asked.id FROM asked)
          AND t.status = 'canceled'
    ) x;
    IF v_retried IS NULL THEN
        RETURN;
    END IF;

    -- Retried tasks never count as succeeded dependencies: one that depends on another
    -- retried task waits for it.
    PERFORM scitq.task_requeue(v_retried, '{failed, canceled}', p_now);
    PERFORM pg_notify('scitq_task_pending_v1', '');
    RETURN QUERY SELECT t.id, t.status FROM scitq.task t WHERE t.id = ANY (v_retried) ORDER BY t.id;
END;
$$;

-- Delete tasks with their executions, output and events. Unfinished dependents of a task
-- that had not succeeded are canceled first (a task never waits for a task that no
-- longer exists); dependents of a succeeded task are left as they are.
CREATE OR REPLACE FUNCTION scitq.task_delete_v1(p_task_ids bigint[], p_now timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    -- a succeeded task has done its part: its dependents are not affected
    PERFORM scitq.task_cancel_dependents_v1(
        ARRAY(SELECT t.id FROM scitq.task t WHERE t.id = ANY (p_task_ids) AND t.status <> 'succeeded'),
        'was deleted',
        p_now
    );
    PERFORM scitq.task_cancel_v1(p_task_ids, 'deleted', p_now);
    -- the dependents keep the reason but lose the link to a row that disappears
    UPDATE scitq.task t SET canceled_by_task_id = NULL
    WHERE t.canceled_by_task_id = ANY (p_task_ids) AND NOT t.id = ANY (p_task_ids);
    DELETE FROM scitq.task t WHERE t.id = ANY (p_task_ids);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    DELETE FROM scitq.task_event e WHERE e.task_id = ANY (p_task_ids);
    RETURN v_count;
END;
$$;

-- Tasks of p_task_ids run again from the start: a held one (assigned or running) has its
-- live execution canceled with p_reason (its agent learns it at its next heartbeat, kills
-- its copy and is refused when it reports: the fencing of execution_check_live_v1) and
-- becomes pending; a finished one (succeeded, failed, canceled) is requeued, pending or
-- waiting while a dependency has not succeeded (failed and canceled ones as task_retry_v1
-- does, with the tasks canceled because of them). Each gets a fresh retry budget and a
-- fresh count of free requeues; attempts are numbered on (the old ones are kept). Waiting
-- dependents stay waiting, and those not started yet go back to waiting: a task that runs
-- again is not a succeeded dependency. Returns the tasks moved.
CREATE OR REPLACE FUNCTION scitq.task_restart(
    p_task_ids bigint[],
    p_reason text,
    p_now timestamptz
)
RETURNS bigint[]
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_held bigint[];
    v_ended bigint[];
    v_succeeded bigint[];
    v_moved bigint[];
BEGIN
    SELECT array_agg(t.id ORDER BY t.id) FILTER (WHERE scitq.task_is_held(t.status)),
           array_agg(t.id ORDER BY t.id) FILTER (WHERE t.status IN ('failed', 'canceled')),
           array_agg(t.id ORDER BY t.id) FILTER (WHERE t.status = 'succeeded')
    INTO v_held, v_ended, v_succeeded
    FROM scitq.task t
    WHERE t.id = ANY (p_task_ids);

    IF v_held IS NOT NULL THEN
        PERFORM scitq.execution_set_status(
            ARRAY(
                SELECT e.id
                FROM scitq.execution e
                WHERE e.task_id = ANY (v_held)
                  AND scitq.execution_is_live(e.status)
            ),
            '{canceled}',
            p_now,
            p_from => scitq.execution_phases(),
            p_failure_reasons => ARRAY[p_reason]
        );
        v_held := ARRAY(
            SELECT s.id
            FROM scitq.task_set_status(v_held, '{pending}', p_now, p_from => scitq.task_held_statuses()) s
        );
        -- the attempt killed does not count: a fresh budget, as a retry by a user gives
        -- (task_set_status gives it to the tasks that leave a final status)
        UPDATE scitq.task t
        SET retry_floor = t.attempt_count,
            requeue_count = 0
        WHERE t.id = ANY (v_held);
    END IF;
    IF v_ended IS NOT NULL THEN
        v_ended := ARRAY(SELECT r.id FROM scitq.task_retry_v1(v_ended, p_now) r);
    END IF;
    IF v_succeeded IS NOT NULL THEN
        v_succeeded := ARRAY(SELECT r.id FROM scitq.task_requeue(v_succeeded, '{succeeded}', p_now) r);
        -- their dependents that have not started wait for them again
        PERFORM scitq.task_set_status(
            ARRAY(
                SELECT d.task_id
                FROM scitq.task_dependency d
                WHERE d.depends_on_id = ANY (v_succeeded)
                ORDER BY d.task_id
            ),
            '{waiting}',
            p_now,
            p_from => '{pending}'
        );
    END IF;
    v_moved := coalesce(v_held, '{}') || coalesce(v_ended, '{}') || coalesce(v_succeeded, '{}');
    IF cardinality(v_moved) > 0 THEN
        PERFORM pg_notify('scitq_task_pending_v1', '');
    END IF;
    RETURN v_moved;
END;
$$;

-- Run tasks again (scitq v1's relaunch, v2's rerun): finished ones (succeeded, failed,
-- canceled) and held ones (assigned, running: their attempt is killed first), as
-- task_restart does; waiting, pending and paused ones are left as they are. Returns the
-- tasks that run again, with their status now.
CREATE OR REPLACE FUNCTION scitq.task_rerun_v1(p_task_ids bigint[], p_now timestamptz DEFAULT now())
RETURNS TABLE (id bigint, status scitq.task_status)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_moved bigint[];
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    v_moved := scitq.task_restart(
        ARRAY(
            SELECT t.id
            FROM scitq.task t
            WHERE t.id = ANY (p_task_ids)
              AND (scitq.task_is_held(t.status) OR NOT scitq.task_is_live(t.status))
            ORDER BY t.id
            FOR UPDATE
        ),
        'rerun by ' || session_user,
        p_now
    );
    RETURN QUERY SELECT t.id, t.status FROM scitq.task t WHERE t.id = ANY (v_moved) ORDER BY t.id;
END;
$$;

-- Edit tasks (scitq v1's task update and modify). p_changes is a JSON object of the fields
-- to change, as task_submit_v1 takes them: command, name, shell, container,
-- container_options, inputs, resources, output, retries, requeues, retry_delay_seconds,
-- download_timeout_seconds, run_timeout_seconds, priority, env, tags, use_cache, and
-- batch (a batch name; created if missing). null clears an optional field (name,
-- container, container_options, output, the timeouts) and gives the others their
-- default. Dependencies cannot be changed.
--
-- Changing what runs (command, shell, container, container_options, inputs, resources,
-- output, env, timeouts, use_cache) makes the task run again with it (p_rerun NULL): a
-- held one is killed and requeued, a finished one is rerun (task_restart: a fresh retry
-- budget); waiting, pending and paused ones just take the change. Other fields (name,
-- batch, priority, retries, requeues, retry_delay_seconds, tags) change in place.
-- p_rerun true reruns whatever changed, false never (a running attempt then goes on with
-- what it was given). Every task whose fields change gets one event in task_event
-- (change: who, and each field's old and new value; from_status = to_status). Tasks that
-- do not exist raise SQ003. Returns each task with its status now and whether it runs again.
CREATE OR REPLACE FUNCTION scitq.task_update_v1(
    p_task_ids bigint[],
    p_changes jsonb,
    p_rerun boolean DEFAULT NULL,
    p_by text DEFAULT NULL,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (id bigint, status scitq.task_status, rerun boolean)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_bad text;
    v_batch_id bigint;
    v_changed bigint[];
    v_rerun bigint[];
    v_missing bigint;
    v_fields text[] := ARRAY[
        'command', 'name', 'shell', 'container', 'container_options', 'inputs', 'resources',
        'output', 'retries', 'requeues', 'retry_delay_seconds', 'download_timeout_seconds',
        'run_timeout_seconds', 'priority', 'env', 'tags', 'use_cache'
    ];
    -- the fields that change what runs
    v_run_fields text[] := ARRAY[
        'command', 'shell', 'container', 'container_options', 'inputs', 'resources', 'output',
        'env', 'download_timeout_seconds', 'run_timeout_seconds', 'use_cache'
    ];
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    IF jsonb_typeof(p_changes) IS DISTINCT FROM 'object' OR p_changes = '{}' THEN
        RAISE EXCEPTION 'changes must be a non-empty JSON object of task fields' USING ERRCODE = 'SQ004';
    END IF;
    SELECT k.key INTO v_bad
    FROM jsonb_object_keys(p_changes) AS k (key)
    WHERE k.key <> ALL (v_fields || '{batch}'::text[])
    ORDER BY k.key
    LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'a task update cannot change %: the fields are %, batch', quote_literal(v_bad),
            array_to_string(v_fields, ', ')
            USING ERRCODE = 'SQ004',
                  HINT = CASE WHEN v_bad LIKE 'depends_on%' THEN 'dependencies are set at submit time' END;
    END IF;
    IF p_changes ? 'command' AND jsonb_typeof(p_changes -> 'command') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'the new command must be a non-empty string' USING ERRCODE = 'SQ004';
    END IF;
    IF p_changes ? 'batch' AND jsonb_typeof(p_changes -> 'batch') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'the new batch must be a batch name' USING ERRCODE = 'SQ004';
    END IF;
    -- the checks of a submission, on the changes (a placeholder command when unchanged)
    PERFORM scitq.task_check_submission(
        jsonb_build_array(jsonb_build_object('command', 'unchanged') || (p_changes - 'batch')),
        'the update'
    );
    SELECT x.id INTO v_missing
    FROM unnest(p_task_ids) AS x (id)
    WHERE NOT EXISTS (SELECT 1 FROM scitq.task t WHERE t.id = x.id)
    LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'task % does not exist', v_missing USING ERRCODE = 'SQ003';
    END IF;
    IF p_changes ? 'batch' THEN
        v_batch_id := scitq.batch_ensure_v1(p_changes ->> 'batch');
    END IF;

    -- lock the tasks (in id order, against deadlocks) and record what changes
    WITH locked AS (
        SELECT t.*
        FROM scitq.task t
        WHERE t.id = ANY (p_task_ids)
        ORDER BY t.id
        FOR UPDATE
    ),
    diff AS (
        SELECT l.id, l.status, f.key,
               (to_jsonb(l) -> f.key) AS old_value,
               f.value AS new_value
        FROM locked l
        CROSS JOIN LATERAL jsonb_each(p_changes - 'batch') AS f (key, value)
        -- a null gives a field its default: compare with what the update writes
        WHERE (to_jsonb(l) -> f.key) IS DISTINCT FROM coalesce(nullif(f.value, 'null'), CASE f.key
                  WHEN 'shell' THEN 'false' WHEN 'use_cache' THEN 'false' WHEN 'retries' THEN '0'
                  WHEN 'priority' THEN '0' WHEN 'inputs' THEN '[]' WHEN 'resources' THEN '[]'
                  WHEN 'tags' THEN '[]' WHEN 'env' THEN '{}' WHEN 'retry_delay_seconds' THEN '10'
                  WHEN 'requeues' THEN '3' ELSE 'null' END::jsonb)
        UNION ALL
        SELECT l.id, l.status, 'batch', to_jsonb(b.name), p_changes -> 'batch'
        FROM locked l
        JOIN scitq.batch b ON b.id = l.batch_id
        WHERE v_batch_id IS NOT NULL
          AND l.batch_id <> v_batch_id
    ),
    event AS (
        INSERT INTO scitq.task_event (task_id, from_status, to_status, at, change)
        SELECT diff.id, diff.status, diff.status, p_now, jsonb_build_object(
                   'by', coalesce(p_by, session_user::text),
                   'fields', jsonb_object_agg(diff.key, jsonb_build_object(
                       'from', diff.old_value, 'to', diff.new_value)))
        FROM diff
        GROUP BY diff.id, diff.status
        RETURNING task_id, change
    )
    SELECT array_agg(event.task_id ORDER BY event.task_id),
           array_agg(event.task_id ORDER BY event.task_id) FILTER (
               WHERE p_rerun OR (p_rerun IS NULL
                                 AND (SELECT array_agg(k) FROM jsonb_object_keys(event.change -> 'fields') k)
                                     && v_run_fields))
    INTO v_changed, v_rerun
    FROM event;
    IF v_changed IS NULL THEN
        RETURN QUERY
        SELECT t.id, t.status, false FROM scitq.task t WHERE t.id = ANY (p_task_ids) ORDER BY t.id;
        RETURN;
    END IF;

    UPDATE scitq.task t
    SET command = coalesce(r.command, t.command),
        name = CASE WHEN p_changes ? 'name' THEN r.name ELSE t.name END,
        shell = CASE WHEN p_changes ? 'shell' THEN coalesce(r.shell, false) ELSE t.shell END,
        container = CASE WHEN p_changes ? 'container' THEN r.container ELSE t.container END,
        container_options = CASE WHEN p_changes ? 'container_options' THEN r.container_options
                                 ELSE t.container_options END,
        inputs = CASE WHEN p_changes ? 'inputs' THEN coalesce(r.inputs, '{}') ELSE t.inputs END,
        resources = CASE WHEN p_changes ? 'resources' THEN coalesce(r.resources, '{}') ELSE t.resources END,
        output = CASE WHEN p_changes ? 'output' THEN r.output ELSE t.output END,
        retries = CASE WHEN p_changes ? 'retries' THEN coalesce(r.retries, 0) ELSE t.retries END,
        requeues = CASE WHEN p_changes ? 'requeues' THEN coalesce(r.requeues, 3) ELSE t.requeues END,
        retry_delay_seconds = CASE WHEN p_changes ? 'retry_delay_seconds'
                                   THEN coalesce(r.retry_delay_seconds, 10) ELSE t.retry_delay_seconds END,
        download_timeout_seconds = CASE WHEN p_changes ? 'download_timeout_seconds'
                                        THEN r.download_timeout_seconds ELSE t.download_timeout_seconds END,
        run_timeout_seconds = CASE WHEN p_changes ? 'run_timeout_seconds'
                                   THEN r.run_timeout_seconds ELSE t.run_timeout_seconds END,
        priority = CASE WHEN p_changes ? 'priority' THEN coalesce(r.priority, 0) ELSE t.priority END,
        env = CASE WHEN p_changes ? 'env' THEN coalesce(r.env, '{}') ELSE t.env END,
        tags = CASE WHEN p_changes ? 'tags' THEN coalesce(r.tags, '{}') ELSE t.tags END,
        use_cache = CASE WHEN p_changes ? 'use_cache' THEN coalesce(r.use_cache, false) ELSE t.use_cache END,
        batch_id = coalesce(v_batch_id, t.batch_id)
    FROM jsonb_to_record(p_changes) AS r (
        command text, name text, shell boolean, container text, container_options text,
        inputs text[], resources text[], output text, retries integer, requeues integer,
        retry_delay_seconds double precision, download_timeout_seconds double precision,
        run_timeout_seconds double precision, priority integer, env jsonb, tags text[],
        use_cache boolean
    )
    WHERE t.id = ANY (v_changed);

    IF v_rerun IS NOT NULL THEN
        v_rerun := scitq.task_restart(v_rerun, 'task updated by ' || coalesce(p_by, session_user::text), p_now);
    END IF;
    RETURN QUERY
    SELECT t.id, t.status, t.id = ANY (coalesce(v_rerun, '{}'))
    FROM scitq.task t
    WHERE t.id = ANY (p_task_ids)
    ORDER BY t.id;
END;
$$;

-- The cache key of a task with use_cache (scitq v1's): a digest of what it runs and where
-- its output goes. Tasks of the same key, whose inputs list the same, make the same output.
CREATE OR REPLACE FUNCTION scitq.task_cache_key(
    p_command text,
    p_shell boolean,
    p_container text,
    p_container_options text,
    p_inputs text[],
    p_resources text[],
    p_output text,
    p_env jsonb
)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT md5(jsonb_build_array(
        p_command, p_shell, p_container, p_container_options, to_jsonb(p_inputs),
        to_jsonb(p_resources), p_output, p_env
    )::text);
$$;

-- Keeps task.cache_key: set for a task with use_cache, NULL otherwise. A row trigger
-- called only for such tasks (its WHEN clause), so that a bulk submit without use_cache,
-- and the updates of status, never pay for it.
CREATE OR REPLACE FUNCTION scitq.task_cache_key_set_v1()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
BEGIN
    NEW.cache_key := CASE WHEN NEW.use_cache THEN scitq.task_cache_key(
        NEW.command, NEW.shell, NEW.container, NEW.container_options, NEW.inputs,
        NEW.resources, NEW.output, NEW.env
    ) END;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER task_cache_key
BEFORE INSERT OR UPDATE OF command, shell, container, container_options, inputs, resources, output, env, use_cache
ON scitq.task
FOR EACH ROW
WHEN (NEW.use_cache OR NEW.cache_key IS NOT NULL)
EXECUTE FUNCTION scitq.task_cache_key_set_v1();

-- The cache candidates of a task (task_claim_v2): the latest 3 succeeded executions of
-- other tasks that ran the key, as JSON. Planned at each call (plan_cache_mode): a plan
-- cached while the execution table was small would scan it whole once it has grown,
-- where execution_cache_key_idx reads a few entries.
CREATE OR REPLACE FUNCTION scitq.execution_cache_candidates(p_cache_key text, p_task_id bigint)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = scitq, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
    SELECT jsonb_agg(jsonb_build_object(
               'execution_id', x.id, 'task_id', x.task_id,
               'input_fingerprint', x.input_fingerprint, 'output_manifest', x.output_manifest)
           ORDER BY x.id DESC)
    FROM (
        SELECT e.id, e.task_id, e.input_fingerprint, e.output_manifest
        FROM scitq.execution e
        WHERE e.cache_key = p_cache_key
          AND e.task_id <> p_task_id
          AND e.status = 'succeeded'
        ORDER BY e.id DESC
        LIMIT 3
    ) x;
$$;

-- task_claim_v1's claim, with what an agent needs for scitq v1's use_cache: for each
-- claimed task, use_cache, and cache_candidates: up to 3 earlier succeeded executions of
-- other tasks that ran the same cache key (latest first) and recorded the listing of
-- their inputs and the files of their output (execution_record_cache_v1), as a JSON array
-- of {execution_id, task_id, input_fingerprint, output_manifest}. The agent lists the
-- inputs and the output, and reports a hit or runs the task (scitq/agent/task_cache.py).
-- Per claimed task: one primary-key read of its key (a scalar subquery, so that it stays
-- an index look-up whatever the planner guesses of the claim's rows), and for a task with
-- use_cache a range of execution_cache_key_idx (execution_cache_candidates).
CREATE OR REPLACE FUNCTION scitq.task_claim_v2(
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
    env jsonb,
    use_cache boolean,
    cache_candidates jsonb
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
BEGIN
    RETURN QUERY
    WITH claimed AS MATERIALIZED (
        SELECT c.*,
               (SELECT t.cache_key FROM scitq.task t WHERE t.id = c.task_id) AS cache_key
        FROM scitq.task_claim_v1(p_worker_id, p_limit, p_now) WITH ORDINALITY AS c
    )
    SELECT c.execution_id, c.task_id, c.attempt, c.lease_expires_at, c.batch, c.name, c.command,
           c.shell, c.container, c.container_options, c.inputs, c.resources, c.output,
           c.download_timeout_seconds, c.run_timeout_seconds, c.env,
           c.cache_key IS NOT NULL,
           CASE WHEN c.cache_key IS NOT NULL
                THEN scitq.execution_cache_candidates(c.cache_key, c.task_id) END
    FROM claimed c
    ORDER BY c.ordinality;
END;
$$;

-- Event log: one row per status transition, written once per statement.
CREATE OR REPLACE FUNCTION scitq.task_event_insert_v1()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
BEGIN
    INSERT INTO scitq.task_event (task_id, from_status, to_status, at)
    SELECT n.id, NULL, n.status, n.status_changed_at
    FROM new_rows n;
    PERFORM scitq.batch_count_add(
        ARRAY(SELECT n.batch_id FROM new_rows n),
        ARRAY(SELECT n.status FROM new_rows n),
        '{}', '{}'
    );
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION scitq.task_event_update_v1()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_changed record;
BEGIN
    -- the rows whose status (or batch) changed, once for the events and the counts
    SELECT array_agg(n.id) AS ids, array_agg(o.status) AS from_statuses,
           array_agg(n.status) AS to_statuses, array_agg(n.status_changed_at) AS ats,
           array_agg(o.batch_id) AS from_batches, array_agg(n.batch_id) AS to_batches
    INTO v_changed
    FROM new_rows n
    JOIN old_rows o ON o.id = n.id
    WHERE o.status IS DISTINCT FROM n.status OR o.batch_id <> n.batch_id;
    IF v_changed.ids IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO scitq.task_event (task_id, from_status, to_status, at)
    SELECT c.id, c.from_status, c.to_status, c.at
    FROM unnest(v_changed.ids, v_changed.from_statuses, v_changed.to_statuses, v_changed.ats)
         AS c (id, from_status, to_status, at)
    WHERE c.from_status IS DISTINCT FROM c.to_status;
    PERFORM scitq.batch_count_add(
        v_changed.to_batches, v_changed.to_statuses, v_changed.from_batches, v_changed.from_statuses
    );
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION scitq.task_count_delete_v1()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
BEGIN
    PERFORM scitq.batch_count_add(
        '{}', '{}', ARRAY(SELECT o.batch_id FROM old_rows o), ARRAY(SELECT o.status FROM old_rows o)
    );
    RETURN NULL;
END;
$$;

-- Add one per task of (p_add_batches, p_add_statuses) and take one away per task of
-- (p_sub_batches, p_sub_statuses) in batch_task_count, in the rows of this backend (slot:
-- its pid), locked in (batch, status) order: two transactions never write the same row,
-- so counting adds no wait between agents (one backend runs one transaction at a time).
CREATE OR REPLACE FUNCTION scitq.batch_count_add(
    p_add_batches bigint[],
    p_add_statuses scitq.task_status[],
    p_sub_batches bigint[],
    p_sub_statuses scitq.task_status[]
)
RETURNS void
-- PL/pgSQL, not SQL: its statement is planned once per session, not at each call
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
BEGIN
    INSERT INTO scitq.batch_task_count AS c (batch_id, status, slot, n)
    SELECT d.batch_id, d.status, pg_backend_pid(), sum(d.delta)
    FROM (
        SELECT a.batch_id, a.status, 1 AS delta
        FROM unnest(p_add_batches, p_add_statuses) AS a (batch_id, status)
        UNION ALL
        SELECT s.batch_id, s.status, -1
        FROM unnest(p_sub_batches, p_sub_statuses) AS s (batch_id, status)
    ) d
    -- a batch deleted in this statement (batch_delete_v1 deletes its tasks first)
    WHERE EXISTS (SELECT 1 FROM scitq.batch b WHERE b.id = d.batch_id)
    GROUP BY d.batch_id, d.status
    HAVING sum(d.delta) <> 0
    ORDER BY d.batch_id, d.status
    ON CONFLICT (batch_id, status, slot) DO UPDATE SET n = c.n + excluded.n;
END;
$$;

CREATE OR REPLACE TRIGGER task_event_insert
AFTER INSERT ON scitq.task
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION scitq.task_event_insert_v1();

CREATE OR REPLACE TRIGGER task_event_update
AFTER UPDATE ON scitq.task
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION scitq.task_event_update_v1();

CREATE OR REPLACE TRIGGER task_count_delete
AFTER DELETE ON scitq.task
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION scitq.task_count_delete_v1();
