-- Host metrics: the figures an agent samples when it heartbeats (load, CPU, memory, the
-- disk of its work dir, disk and network throughput), kept per worker as a bounded
-- history: one day, and one sample per 5 seconds at most, whatever the agent sends.

-- Record one sample (a JSON object: the columns of scitq.worker_metric but worker_id and
-- at; unknown keys are ignored, a negative figure is stored as NULL) and drop the
-- worker's samples older than a day. Internal: called by worker_heartbeat_v2 once the
-- worker is checked against session_user, so a role writes its own worker's only.
CREATE OR REPLACE FUNCTION scitq.worker_record_metrics(
    p_worker_id bigint,
    p_metrics jsonb,
    p_now timestamptz
)
RETURNS void
LANGUAGE plpgsql
SET search_path = scitq, pg_temp
AS $$
DECLARE
    v_last scitq.worker_metric;
    v_free bigint;
    v_floor bigint;
BEGIN
    IF p_metrics IS NULL OR jsonb_typeof(p_metrics) <> 'object' THEN
        RETURN;
    END IF;
    v_free := scitq.worker_metric_figure(p_metrics, 'disk_free_bytes')::bigint;
    v_floor := scitq.worker_metric_figure(p_metrics, 'disk_floor_bytes')::bigint;
    SELECT * INTO v_last
    FROM scitq.worker_metric m
    WHERE m.worker_id = p_worker_id
    ORDER BY m.at DESC
    LIMIT 1;
    -- a sample closer than 5 s to the last one is dropped (the history stays bounded
    -- whatever the agent's period), unless the disk crossed the floor: explain reads it
    IF FOUND
       AND v_last.at > p_now - interval '5 seconds'
       AND (v_last.disk_free_bytes < v_last.disk_floor_bytes) IS NOT DISTINCT FROM (v_free < v_floor)
    THEN
        RETURN;
    END IF;
    INSERT INTO scitq.worker_metric AS m (
        worker_id, at, load1, cpu_percent, iowait_percent, memory_used_bytes,
        memory_total_bytes, disk_free_bytes, disk_total_bytes, disk_floor_bytes,
        disk_read_bytes_per_second, disk_write_bytes_per_second,
        network_receive_bytes_per_second, network_send_bytes_per_second
    )
    VALUES (
        p_worker_id, p_now,
        scitq.worker_metric_figure(p_metrics, 'load1'),
        scitq.worker_metric_figure(p_metrics, 'cpu_percent'),
        scitq.worker_metric_figure(p_metrics, 'iowait_percent'),
        scitq.worker_metric_figure(p_metrics, 'memory_used_bytes')::bigint,
        scitq.worker_metric_figure(p_metrics, 'memory_total_bytes')::bigint,
        v_free,
        scitq.worker_metric_figure(p_metrics, 'disk_total_bytes')::bigint,
        v_floor,
        scitq.worker_metric_figure(p_metrics, 'disk_read_bytes_per_second'),
        scitq.worker_metric_figure(p_metrics, 'disk_write_bytes_per_second'),
        scitq.worker_metric_figure(p_metrics, 'network_receive_bytes_per_second'),
        scitq.worker_metric_figure(p_metrics, 'network_send_bytes_per_second')
    )
    ON CONFLICT (worker_id, at) DO NOTHING;
    -- the retention bound: a range of the primary key
    DELETE FROM scitq.worker_metric m
    WHERE m.worker_id = p_worker_id
      AND m.at < p_now - interval '1 day';
END;
$$;

-- One figure of a sample: a finite number of 0 or more, else NULL (never an error: a
-- heartbeat must not fail for its metrics).
CREATE OR REPLACE FUNCTION scitq.worker_metric_figure(p_metrics jsonb, p_key text)
RETURNS double precision
LANGUAGE sql
IMMUTABLE
SET search_path = scitq, pg_temp
AS $$
    SELECT CASE
        WHEN jsonb_typeof(p_metrics -> p_key) = 'number'
             AND (p_metrics ->> p_key)::double precision BETWEEN 0 AND 9.0e18
            THEN (p_metrics ->> p_key)::double precision
    END;
$$;

-- Heartbeat with the host's figures (p_metrics, NULL: none this time): what
-- worker_heartbeat_v1 does and returns, then the sample is recorded.
CREATE OR REPLACE FUNCTION scitq.worker_heartbeat_v2(
    p_worker_id bigint,
    p_execution_ids bigint[] DEFAULT '{}',
    p_acked_signal_ids bigint[] DEFAULT '{}',
    p_metrics jsonb DEFAULT NULL,
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
BEGIN
    p_now := scitq.effective_now_v1(p_now);
    -- v1 checks that session_user may act for the worker before anything is written
    RETURN QUERY
    SELECT * FROM scitq.worker_heartbeat_v1(p_worker_id, p_execution_ids, p_acked_signal_ids, p_now);
    PERFORM scitq.worker_record_metrics(p_worker_id, p_metrics, p_now);
END;
$$;

-- The metrics history of every worker, newest first per worker: what the dashboard's
-- workers page charts. is_low_disk: the agent refuses to claim (free disk below its floor).
CREATE OR REPLACE VIEW scitq.worker_metrics AS
SELECT m.worker_id,
       w.name AS worker_name,
       m.at,
       m.load1,
       m.cpu_percent,
       m.iowait_percent,
       m.memory_used_bytes,
       m.memory_total_bytes,
       m.disk_free_bytes,
       m.disk_total_bytes,
       m.disk_floor_bytes,
       coalesce(m.disk_free_bytes < m.disk_floor_bytes, false) AS is_low_disk,
       m.disk_read_bytes_per_second,
       m.disk_write_bytes_per_second,
       m.network_receive_bytes_per_second,
       m.network_send_bytes_per_second
FROM scitq.worker_metric m
JOIN scitq.worker w ON w.id = m.worker_id;
