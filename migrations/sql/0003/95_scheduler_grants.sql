-- Privileges on the scheduler's objects (60_scheduler.sql) that 90_roles.sql does not
-- give. 90_roles.sql runs before this file: it revokes everything from PUBLIC, agents and
-- readers, and gives scitq_admin SELECT on every table and view and EXECUTE on every
-- function, the scheduler's included. Agents get nothing of the scheduler.

-- readers see the decision log through its view only
GRANT SELECT ON scitq.scheduler_log TO scitq_reader;
