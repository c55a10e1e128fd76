-- Partitions and retention (docs/reliability.md, "Size: partitions, retention, counters").
--
-- scitq.execution_output is partitioned by ranges of execution ids: an attempt's output
-- is read by execution id (one partition) and is worth keeping as long as its attempt's
-- outcome says, so a range is dropped whole once every attempt in it has ended long
-- enough ago. Each range is partitioned again by "retained": the _all leaf holds what
-- agents wrote; when succeeded output has aged out, the output of the attempts that did
-- not succeed is copied to the range's _failed leaf (a minority of the rows) and the _all
-- leaf is dropped; the _failed leaf is dropped when failed output has aged out too.
-- scitq.task_event is partitioned by time: events are written at the time they record,
-- read by no scitq program, and dropped by age.
--
-- Each table has a DEFAULT partition, so that a write never fails when no partition was
-- created ahead (an agent running without a scheduler): scitq.partition_ensure_v1 moves
-- what landed there into the partition it creates for it. Partition names and bounds are
-- identifiers and literals of PostgreSQL's own format() (%I, %L), never user input.

-- The range partitions of p_parent with their bounds as text (the default is left out).
-- Bounds are rendered in UTC (the callers set the TimeZone).
CREATE OR REPLACE FUNCTION scitq.partition_bounds(p_parent regclass)
RETURNS TABLE (partition regclass, name text, lower text, upper text)
LANGUAGE sql
STABLE
SET search_path = scitq, pg_temp
AS $$
    SELECT c.oid::regclass, c.relname::text, b.m[1], b.m[2]
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL (
        SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid),
                            '^FOR VALUES FROM \(''?([^'')]*)''?\) TO \(''?([^'')]*)''?\)$') AS m
    ) b
    WHERE i.inhparent = p_parent
      AND b.m IS NOT NULL
    ORDER BY c.relname;
$$;

-- Create the range partition p_name [p_lower, p_upper) of p_parent on column p_key (with
-- its _all leaf for execution output), moving the rows of that range that landed in the
-- default partition into it. Returns the number of rows moved.
CREATE OR REPLACE FUNCTION scitq.partition_create(
    p_parent regclass,
    p_key text,
    p_name text,
    p_lower text,
    p_upper text
)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_default_name text := (
        SELECT c.relname FROM pg_partitioned_table p
        JOIN pg_class c ON c.oid = p.partdefid
        WHERE p.partrelid = p_parent
    );
    v_stray boolean := false;
    v_moved bigint := 0;
BEGIN
    IF v_default_name IS NOT NULL THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM scitq.%I WHERE %I >= %L AND %I < %L)',
                       v_default_name, p_key, p_lower, p_key, p_upper)
        INTO v_stray;
    END IF;
    IF v_stray THEN
        -- a range must be empty in the default partition before it can have its own
        EXECUTE format('CREATE TEMP TABLE scitq_stray ON COMMIT DROP AS SELECT * FROM scitq.%I LIMIT 0',
                       v_default_name);
        EXECUTE format('WITH d AS (DELETE FROM scitq.%I WHERE %I >= %L AND %I < %L RETURNING *)'
                       ' INSERT INTO pg_temp.scitq_stray SELECT * FROM d',
                       v_default_name, p_key, p_lower, p_key, p_upper);
        GET DIAGNOSTICS v_moved = ROW_COUNT;
    END IF;
    IF p_parent = 'scitq.execution_output'::regclass THEN
        EXECUTE format('CREATE TABLE scitq.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)'
                       ' PARTITION BY LIST (retained)', p_name, p_parent, p_lower, p_upper);
        EXECUTE format('CREATE TABLE scitq.%I PARTITION OF scitq.%I FOR VALUES IN (false)',
                       p_name || '_all', p_name);
    ELSE
        EXECUTE format('CREATE TABLE scitq.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                       p_name, p_parent, p_lower, p_upper);
    END IF;
    IF v_stray THEN
        EXECUTE format('INSERT INTO %s SELECT * FROM pg_temp.scitq_stray', p_parent);
        DROP TABLE pg_temp.scitq_stray;
    END IF;
    RETURN v_moved;
END;
$$;

-- Create the partitions that writes will need: execution output ranges of p_output_width
-- execution ids up to p_output_ahead ranges past the newest execution, event partitions of
-- p_event_days days up to p_event_ahead past p_now (and back to p_events_since, for an
-- upgrade that brings older events). Also creates the default partitions if missing.
-- Idempotent; returns the partitions created and the stray rows moved into them.
CREATE OR REPLACE FUNCTION scitq.partition_ensure_v1(
    p_output_width bigint DEFAULT 100000,
    p_output_ahead integer DEFAULT 4,
    p_event_days integer DEFAULT 7,
    p_event_ahead integer DEFAULT 2,
    p_events_since timestamptz DEFAULT NULL,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (partition text, moved_rows bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO'
-- DDL on a partitioned table waits for its readers; never queue behind a long one
SET lock_timeout = '10s'
AS $$
DECLARE
    v_top bigint;
    v_need bigint;
    v_step interval;
    v_low timestamptz;
    v_high timestamptz;
    v_from timestamptz;
    v_name text;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    IF p_output_width IS NULL OR p_output_width < 1 OR p_output_ahead IS NULL OR p_output_ahead < 1
       OR p_event_days IS NULL OR p_event_days < 1 OR p_event_ahead IS NULL OR p_event_ahead < 1 THEN
        RAISE EXCEPTION 'partition widths and the partitions made ahead must be 1 or more'
            USING ERRCODE = 'SQ004';
    END IF;
    IF to_regclass('scitq.execution_output_default') IS NULL THEN
        CREATE TABLE scitq.execution_output_default PARTITION OF scitq.execution_output DEFAULT;
        partition := 'execution_output_default'; moved_rows := 0; RETURN NEXT;
    END IF;
    IF to_regclass('scitq.task_event_default') IS NULL THEN
        CREATE TABLE scitq.task_event_default PARTITION OF scitq.task_event DEFAULT;
        partition := 'task_event_default'; moved_rows := 0; RETURN NEXT;
    END IF;

    -- execution output: contiguous ranges from 0
    SELECT max(b.upper::bigint) INTO v_top
    FROM scitq.partition_bounds('scitq.execution_output') b;
    v_top := coalesce(v_top, 0);
    v_need := coalesce((SELECT max(e.id) FROM scitq.execution e), 0) + p_output_ahead * p_output_width;
    WHILE v_top <= v_need LOOP
        partition := format('execution_output_e%s', v_top);
        moved_rows := scitq.partition_create('scitq.execution_output', 'execution_id', partition,
                                             v_top::text, (v_top + p_output_width)::text);
        RETURN NEXT;
        v_top := v_top + p_output_width;
    END LOOP;

    -- events: contiguous ranges of p_event_days, aligned on Mondays
    v_step := make_interval(days => p_event_days);
    SELECT min(b.lower::timestamptz), max(b.upper::timestamptz) INTO v_low, v_high
    FROM scitq.partition_bounds('scitq.task_event') b;
    IF v_high IS NULL THEN
        v_low := date_bin(v_step, p_now, TIMESTAMPTZ '2000-01-03 00:00:00+00');
        v_high := v_low;
    END IF;
    -- back in time, before the oldest partition (older events brought by an upgrade)
    IF p_events_since IS NOT NULL AND p_events_since < v_low THEN
        v_from := date_bin(v_step, p_events_since, TIMESTAMPTZ '2000-01-03 00:00:00+00');
        WHILE v_from < v_low LOOP
            v_name := 'task_event_' || to_char(v_from, 'YYYYMMDD');
            partition := v_name;
            moved_rows := scitq.partition_create(
                'scitq.task_event', 'at', v_name, v_from::text, least(v_from + v_step, v_low)::text
            );
            RETURN NEXT;
            v_from := v_from + v_step;
        END LOOP;
    END IF;
    WHILE v_high <= p_now + p_event_ahead * v_step LOOP
        partition := 'task_event_' || to_char(v_high, 'YYYYMMDD');
        moved_rows := scitq.partition_create('scitq.task_event', 'at', partition,
                                             v_high::text, (v_high + v_step)::text);
        RETURN NEXT;
        v_high := v_high + v_step;
    END LOOP;
END;
$$;

-- Drop what the retention periods let go (NULL: keep forever), as whole partitions:
--   * the _all leaf of an execution output range once every attempt in it has ended more
--     than p_succeeded ago (and no later attempt can be given an id in it), after copying
--     to its _failed leaf the output of its attempts that did not succeed and ended less
--     than p_failed ago (p_failed NULL: all of them);
--   * the range (its _failed leaf) once those have ended more than p_failed ago;
--   * event partitions whose whole range is older than p_events.
-- Tasks and executions are never touched. Returns each partition dropped or filled, with
-- the rows copied (for a _failed leaf) or the estimated rows dropped.
CREATE OR REPLACE FUNCTION scitq.partition_prune_v1(
    p_succeeded interval,
    p_failed interval,
    p_events interval,
    p_now timestamptz DEFAULT now()
)
RETURNS TABLE (partition text, action text, rows bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO'
SET lock_timeout = '10s'
AS $$
DECLARE
    v_range record;
    v_live boolean;
    v_last_end timestamptz;
    v_failed_end timestamptz;
    v_all text;
    v_failed text;
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    IF p_succeeded < interval '0' OR p_failed < interval '0' OR p_events < interval '0' THEN
        RAISE EXCEPTION 'retention periods must be 0 or more'
            USING ERRCODE = 'SQ004';
    END IF;
    FOR v_range IN
        SELECT b.name, b.lower::bigint AS lower, b.upper::bigint AS upper
        FROM scitq.partition_bounds('scitq.execution_output') b
        ORDER BY b.lower::bigint
    LOOP
        -- complete: a later execution exists, so no id of the range is still to be given
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM scitq.execution e WHERE e.id >= v_range.upper);
        SELECT bool_or(scitq.execution_is_live(e.status)),
               max(e.finished_at),
               max(e.finished_at) FILTER (WHERE e.status <> 'succeeded')
        INTO v_live, v_last_end, v_failed_end
        FROM scitq.execution e
        WHERE e.id >= v_range.lower AND e.id < v_range.upper;
        CONTINUE WHEN coalesce(v_live, false);
        v_all := v_range.name || '_all';
        v_failed := v_range.name || '_failed';
        IF to_regclass(format('scitq.%I', v_all)) IS NOT NULL THEN
            CONTINUE WHEN p_succeeded IS NULL OR v_last_end >= p_now - p_succeeded;
            IF v_failed_end IS NOT NULL AND (p_failed IS NULL OR v_failed_end >= p_now - p_failed) THEN
                IF to_regclass(format('scitq.%I', v_failed)) IS NULL THEN
                    EXECUTE format('CREATE TABLE scitq.%I PARTITION OF scitq.%I FOR VALUES IN (true)',
                                   v_failed, v_range.name);
                END IF;
                EXECUTE format(
                    'INSERT INTO scitq.execution_output (execution_id, seq, retained, stream, at, text)'
                    ' SELECT o.execution_id, o.seq, true, o.stream, o.at, o.text'
                    ' FROM scitq.%I o JOIN scitq.execution e ON e.id = o.execution_id'
                    ' WHERE e.status <> ''succeeded'' AND ($1::interval IS NULL OR e.finished_at >= $2 - $1)',
                    v_all) USING p_failed, p_now;
                GET DIAGNOSTICS rows = ROW_COUNT;
                partition := v_failed; action := 'kept'; RETURN NEXT;
            END IF;
            partition := v_all; action := 'dropped';
            rows := (SELECT greatest(c.reltuples, 0)::bigint FROM pg_class c
                     WHERE c.oid = format('scitq.%I', v_all)::regclass);
            EXECUTE format('DROP TABLE scitq.%I', v_all);
            RETURN NEXT;
            IF to_regclass(format('scitq.%I', v_failed)) IS NULL THEN
                EXECUTE format('DROP TABLE scitq.%I', v_range.name);
                partition := v_range.name; action := 'dropped'; rows := 0; RETURN NEXT;
            END IF;
        ELSIF p_failed IS NOT NULL AND (v_failed_end IS NULL OR v_failed_end < p_now - p_failed) THEN
            partition := v_range.name; action := 'dropped';
            rows := (SELECT greatest(sum(c.reltuples), 0)::bigint FROM pg_inherits i
                     JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = format('scitq.%I', v_range.name)::regclass);
            EXECUTE format('DROP TABLE scitq.%I', v_range.name);
            RETURN NEXT;
        END IF;
    END LOOP;

    IF p_events IS NOT NULL THEN
        FOR v_range IN
            SELECT b.name, b.upper::timestamptz AS upper
            FROM scitq.partition_bounds('scitq.task_event') b
            WHERE b.upper::timestamptz <= p_now - p_events
            ORDER BY b.upper::timestamptz
        LOOP
            partition := v_range.name; action := 'dropped';
            rows := (SELECT greatest(c.reltuples, 0)::bigint FROM pg_class c
                     WHERE c.oid = format('scitq.%I', v_range.name)::regclass);
            EXECUTE format('DROP TABLE scitq.%I', v_range.name);
            RETURN NEXT;
        END LOOP;
    END IF;
END;
$$;

-- Fold the per-backend rows of batch_task_count into slot 0 (the counts are unchanged).
-- Rows a transaction holds right now are skipped and folded next time, so this never
-- waits for an agent. Returns the number of rows folded.
CREATE OR REPLACE FUNCTION scitq.batch_count_compact_v1()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    WITH doomed AS (
        SELECT c.batch_id, c.status, c.slot
        FROM scitq.batch_task_count c
        WHERE c.slot <> 0
        ORDER BY c.batch_id, c.status, c.slot
        FOR UPDATE SKIP LOCKED
    ),
    folded AS (
        DELETE FROM scitq.batch_task_count c
        USING doomed d
        WHERE c.batch_id = d.batch_id AND c.status = d.status AND c.slot = d.slot
        RETURNING c.batch_id, c.status, c.n
    )
    INSERT INTO scitq.batch_task_count AS c (batch_id, status, slot, n)
    SELECT f.batch_id, f.status, 0, sum(f.n)
    FROM folded f
    GROUP BY f.batch_id, f.status
    ORDER BY f.batch_id, f.status
    ON CONFLICT (batch_id, status, slot) DO UPDATE SET n = c.n + excluded.n;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- The partitions of execution output and events, for `scitq db prune --list` and psql.
CREATE OR REPLACE VIEW scitq.partition_overview AS
SELECT p.relname::text AS parent,
       c.relname::text AS partition,
       pg_get_expr(c.relpartbound, c.oid) AS bounds,
       (SELECT coalesce(sum(greatest(x.reltuples, 0)), 0)::bigint
        FROM pg_partition_tree(c.oid) t JOIN pg_class x ON x.oid = t.relid WHERE t.isleaf) AS estimated_rows,
       (SELECT coalesce(sum(pg_relation_size(t.relid)), 0)::bigint
        FROM pg_partition_tree(c.oid) t WHERE t.isleaf) AS bytes
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE p.oid IN ('scitq.execution_output'::regclass, 'scitq.task_event'::regclass)
ORDER BY p.relname, c.relname;

-- The partitions a fresh database writes to first.
SELECT count(*) FROM scitq.partition_ensure_v1();
