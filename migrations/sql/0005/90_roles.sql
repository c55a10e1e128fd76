-- Roles and privileges. Applied after every function and view, by each migration that
-- changes them (roles are cluster-wide, so creation is conditional).
--   scitq_admin   CLI, web, scheduler: reads every table, executes every function; writes
--                 only through the functions
--   scitq_agent   agents: executes the agent functions, no table privilege at all
--   scitq_reader  reporting: SELECT on the documented views only

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scitq_admin') THEN
        CREATE ROLE scitq_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scitq_agent') THEN
        CREATE ROLE scitq_agent NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scitq_reader') THEN
        CREATE ROLE scitq_reader NOLOGIN;
    END IF;
END;
$$;

REVOKE ALL ON SCHEMA scitq FROM PUBLIC;
GRANT USAGE ON SCHEMA scitq TO scitq_admin, scitq_agent, scitq_reader;

REVOKE ALL ON ALL TABLES IN SCHEMA scitq FROM PUBLIC, scitq_agent, scitq_reader;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA scitq FROM PUBLIC, scitq_agent, scitq_reader;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA scitq FROM PUBLIC, scitq_agent, scitq_reader;

GRANT SELECT ON ALL TABLES IN SCHEMA scitq TO scitq_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA scitq TO scitq_admin;

-- The writers of the state machine and the internal steps built on them: called by the
-- functions above, which run as their owner, and by no role directly.
REVOKE EXECUTE ON FUNCTION
    scitq.task_set_status(bigint[], scitq.task_status[], timestamptz, scitq.task_status[], timestamptz[], text[], bigint[], boolean),
    scitq.execution_set_status(bigint[], scitq.execution_status[], timestamptz, scitq.execution_status[], scitq.failure_class[], text[], integer[], double precision[], double precision[], double precision[], bigint[], bigint[], bigint[]),
    scitq.task_requeue(bigint[], scitq.task_status[], timestamptz),
    scitq.task_restart(bigint[], text, timestamptz),
    scitq.execution_end(bigint[], scitq.execution_status, text, timestamptz, boolean),
    scitq.execution_end_of_worker(bigint, text, timestamptz, boolean),
    scitq.execution_check_phase(bigint, bigint[], scitq.execution_status, timestamptz),
    scitq.execution_move_to_phase(bigint[], scitq.execution_status, timestamptz)
FROM scitq_admin;

GRANT EXECUTE ON FUNCTION
    scitq.worker_register_v1(text, text, text[], integer, integer, integer, double precision, timestamptz),
    scitq.worker_heartbeat_v1(bigint, bigint[], bigint[], timestamptz),
    scitq.worker_heartbeat_v2(bigint, bigint[], bigint[], jsonb, timestamptz),
    scitq.worker_stop_v1(bigint, timestamptz),
    scitq.task_claim_v1(bigint, integer, timestamptz),
    scitq.task_claim_v2(bigint, integer, timestamptz),
    scitq.execution_record_cache_v1(bigint, bigint, text, jsonb, bigint, timestamptz),
    scitq.execution_set_phase_v1(bigint, bigint, scitq.execution_status, timestamptz),
    scitq.execution_set_phase_v2(bigint, bigint[], scitq.execution_status, timestamptz),
    scitq.execution_append_output_v1(bigint, bigint[], integer[], scitq.output_stream[], text[], timestamptz),
    scitq.execution_finish_v1(bigint, jsonb, timestamptz)
TO scitq_agent;

GRANT SELECT ON
    scitq.batch_progress,
    scitq.task_overview,
    scitq.worker_overview,
    scitq.worker_metrics,
    scitq.execution_overview,
    scitq.execution_stats,
    scitq.task_log
TO scitq_reader;

-- What the views above call: the task counts of scitq.batch_progress (SECURITY DEFINER)
GRANT EXECUTE ON FUNCTION scitq.batch_count_tasks_v1(bigint) TO scitq_reader;
